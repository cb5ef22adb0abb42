"""The label sets of bench/RESULTS.md section 17: rendered labels as JPEG, as cameras deliver them.

    python bench/cpu_sets.py OUT_DIR

writes OUT_DIR/labels40/ (40 labels, seeds 1200.., the ordinary variants in turn: plain, rotated, upside
down, perspective, large 2048x1536, blurred, low contrast) and OUT_DIR/hard40/ (40 labels, seeds 6000..,
motion, defocus, tilted, dim, noisy, small and mixed) and OUT_DIR/hard120b/ (120 more hard labels, seeds
7000.., the second look of section 20), JPEG quality 90, each with its labels.jsonl.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.int8_sets import write_sets  # noqa: E402
from daemon.samples.render import HARD_VARIANTS, VARIANTS  # noqa: E402

SETS = {"labels40": (40, 1200, VARIANTS), "hard40": (40, 6000, HARD_VARIANTS), "hard120b": (120, 7000, HARD_VARIANTS)}
JPEG_QUALITY = 90


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path, help="where labels40/, hard40/ and hard120b/ are written")
    write_sets(ap.parse_args().out_dir, SETS, JPEG_QUALITY)
    return 0


if __name__ == "__main__":
    sys.exit(main())
