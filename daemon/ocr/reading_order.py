"""Reading order: top to bottom, and left to right within a line."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def reading_order(quads: Sequence[np.ndarray]) -> list[int]:
    """Indices of the quads in reading order. Boxes whose vertical centres lie within half the
    smaller box height of each other are on the same line and go left to right."""
    if not quads:
        return []
    # every quad's vertical centre, left edge and height at once: the reductions each quad's own made, per row
    corners = np.asarray(quads)
    ys = corners[:, :, 1]
    centers = list(zip(ys.mean(axis=1).tolist(), corners[:, :, 0].min(axis=1).tolist(), np.ptp(ys, axis=1).tolist()))
    order = sorted(range(len(quads)), key=lambda i: (centers[i][0], centers[i][1]))
    lines: list[list[int]] = []
    for i in order:
        cy, _, h = centers[i]
        if lines:
            last = lines[-1][-1]
            ly, _, lh = centers[last]
            if abs(cy - ly) <= 0.5 * max(1.0, min(h, lh)):
                lines[-1].append(i)
                continue
        lines.append([i])
    return [i for line in lines for i in sorted(line, key=lambda j: centers[j][1])]
