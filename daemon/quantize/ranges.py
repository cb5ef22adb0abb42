"""Activation ranges for symmetric INT8: |x| histograms collected batch by batch, then one threshold per tensor.

ONNX Runtime's own entropy search is a Python loop over ~1000 candidate thresholds per tensor with a
nested loop over the quantized bins: with 2048 bins it took more than 10 minutes for the recognizer on
this 2-core CPU. Here the histograms are of |x| (symmetric INT8 has one scale per tensor, TensorRT's
calibrator works the same way), they grow by exact doubling so merging batches never re-bins data, and
the KL search (TensorRT's algorithm: 128 quantized levels per side) is vectorized per candidate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

NUM_BINS = 2048          # histogram resolution of |x|; entropy needs it fine (ORT's 128 leaves the full range)
QUANT_LEVELS = 128       # INT8 levels per side of zero
PERCENTILE = 99.99       # --method percentile: share of |x| kept unclipped (the recognizer's; see defaults)


@dataclass
class AbsHistogram:
    """Histogram of |x| over [0, top] in NUM_BINS bins; top doubles when a batch exceeds it."""
    counts: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BINS, np.int64))
    top: float = 0.0

    def add(self, values: np.ndarray) -> None:
        a = np.abs(values.ravel())
        amax = float(a.max()) if a.size else 0.0
        if amax <= 0.0 or not np.isfinite(amax):
            self.counts[0] += a.size
            return
        if self.top == 0.0:
            self.top = amax
        while amax > self.top:       # double the range: pairs of old bins fall into one new bin exactly
            self.counts = np.concatenate([self.counts.reshape(-1, 2).sum(axis=1),
                                          np.zeros(len(self.counts) // 2, np.int64)])
            self.top *= 2.0
        idx = np.minimum((a * (len(self.counts) / self.top)).astype(np.int64), len(self.counts) - 1)
        self.counts += np.bincount(idx, minlength=len(self.counts))

    @property
    def bin_width(self) -> float:
        return self.top / len(self.counts)

    def max_value(self) -> float:
        """Upper edge of the highest non-empty bin (the observed |x| max, to one bin)."""
        nz = np.flatnonzero(self.counts)
        return float((nz[-1] + 1) * self.bin_width) if nz.size else 0.0


def percentile_threshold(h: AbsHistogram, percentile: float = PERCENTILE) -> float:
    total = h.counts.sum()
    if total == 0 or h.top == 0.0:
        return 0.0
    cdf = np.cumsum(h.counts) / total
    i = int(np.searchsorted(cdf, percentile / 100.0))
    return float(min(i + 1, len(h.counts)) * h.bin_width)


def entropy_threshold(h: AbsHistogram, levels: int = QUANT_LEVELS) -> float:
    """The clipping threshold whose INT8 version of the |x| distribution has the least KL divergence
    from the original (outliers folded into the last bin), as TensorRT's entropy calibrator picks it."""
    hist = h.counts.astype(np.float64)
    # The zero bin holds every exact zero (ReLU outputs, the recognizer's right padding): left as it is,
    # that spike dominates the divergence and the search clips the tensor to its smallest candidate.
    # TensorRT's and pytorch-quantization's calibrators flatten it the same way.
    if len(hist) > 1:
        hist[0] = hist[1]
    last = int(np.flatnonzero(hist)[-1]) + 1 if hist.any() else 0
    if last <= levels:        # fewer occupied bins than INT8 levels: nothing to gain by clipping
        return h.max_value()
    hist = hist[:last]
    suffix = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])   # suffix[i] = sum(hist[i:])
    best_i, best_kl = last, np.inf
    for i in range(levels, last + 1):
        p = hist[:i].copy()
        p[-1] += suffix[i]
        nonzero = p > 0
        starts = (np.arange(levels) * i) // levels
        q_sum = np.add.reduceat(hist[:i], starts)
        q_cnt = np.add.reduceat(nonzero.astype(np.float64), starts)
        lengths = np.diff(np.append(starts, i))
        q = np.repeat(np.divide(q_sum, q_cnt, out=np.zeros_like(q_sum), where=q_cnt > 0), lengths) * nonzero
        p_n = p[nonzero] / p.sum()
        q_tot = q.sum()
        if q_tot <= 0:
            continue
        q_n = np.maximum(q[nonzero] / q_tot, 1e-12)
        kl = float(np.sum(p_n * np.log(p_n / q_n)))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(best_i * h.bin_width)


def threshold(h: AbsHistogram, method: str, percentile: float = PERCENTILE) -> float:
    if method == "minmax":
        return h.max_value()
    if method == "percentile":
        return percentile_threshold(h, percentile)
    if method == "entropy":
        return entropy_threshold(h)
    raise ValueError(f"unknown calibration method {method!r}")


def collect_histograms(fp32: Path, op_types: Sequence[str], batches: Iterable[np.ndarray],
                       progress: Callable[[int], None] = lambda n: None) -> dict[str, AbsHistogram]:
    """|x| histograms of every activation that Q/DQ of op_types will quantize, over the batches.

    ONNX Runtime's calibrator picks the tensors and runs the model with them as extra outputs; each batch's
    tensors are folded into the histograms and dropped before the next batch runs (ORT's collect_data keeps
    every batch's tensors until the end: 200 recognizer lines ran out of 24 GiB).
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    hists: dict[str, AbsHistogram] = {}
    with tempfile.TemporaryDirectory(prefix="ocr-calib-") as tmp:
        # a histogram calibrator adds the tensors themselves as graph outputs (MinMax adds reductions)
        calibrator = create_calibrator(fp32, list(op_types), augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.Percentile)
        session = calibrator.infer_session
        names = [o.name for o in session.get_outputs()]
        wanted = [k for k, n in enumerate(names) if n in calibrator.tensors_to_calibrate]
        for batch in batches:
            outputs = session.run(None, {input_name: batch})
            for k in wanted:
                hists.setdefault(names[k], AbsHistogram()).add(outputs[k])
            del outputs
            progress(1)
        del calibrator
    if not hists:
        raise ValueError(f"no calibration batches for {fp32}")
    return hists


def activation_ranges(hists: dict[str, AbsHistogram], method: str,
                      per_tensor: dict[str, str] | None = None, percentile: float = PERCENTILE) -> dict[str, float]:
    """Tensor name -> symmetric threshold; per_tensor overrides the method for named tensors."""
    per_tensor = per_tensor or {}
    return {name: max(threshold(h, per_tensor.get(name, method), percentile), 1e-8) for name, h in hists.items()}
