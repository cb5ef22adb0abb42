"""FP32 ONNX -> Q/DQ INT8 ONNX with ONNX Runtime's quantize_static, in the form TensorRT expects.

Symmetric INT8 activations and per-channel symmetric INT8 weights (zero points 0: TensorRT's explicit
quantization accepts nothing else), biases left in float (TensorRT fuses them in float). The activation
ranges come from daemon.quantize.ranges and reach quantize_static through its calibration cache, so one
set of histograms serves any number of quantized variants (the per-layer sensitivity runs need that).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from daemon.quantize.prepare import free_batch, restore_metadata


@dataclass(frozen=True)
class QdqSettings:
    method: str                          # "entropy", "percentile" or "minmax" (daemon.quantize.ranges)
    op_types: tuple[str, ...]            # op types that get Q/DQ (the rest stays float)
    exclude_nodes: tuple[str, ...] = ()  # node names kept in float
    percentile: float = 99.99            # share of |x| kept unclipped by method "percentile"


def quantize_qdq(fp32: Path, out: Path, batches: Iterable[np.ndarray], settings: QdqSettings,
                 progress: Callable[[int], None] = lambda n: None) -> Path:
    """Calibrates on batches (inputs of fp32's fixed shape) and writes the Q/DQ model to out."""
    from daemon.quantize.ranges import activation_ranges, collect_histograms

    hists = collect_histograms(fp32, settings.op_types, batches, progress)
    ranges = activation_ranges(hists, settings.method, percentile=settings.percentile)
    return write_qdq(fp32, out, ranges, settings.op_types, exclude_nodes=settings.exclude_nodes)


def write_qdq(fp32: Path, out: Path, ranges: dict[str, float], op_types: Sequence[str],
              exclude_nodes: Sequence[str] = (), only_nodes: Sequence[str] = ()) -> Path:
    """Writes the Q/DQ model of fp32 with the given symmetric activation thresholds; only_nodes, when
    given, limits Q/DQ to those node names (one layer at a time for the sensitivity measurement)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    data = TensorsData(CalibrationMethod.MinMax,
                       {name: (np.float32(-t), np.float32(t)) for name, t in ranges.items()})
    with tempfile.TemporaryDirectory(prefix="ocr-qdq-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(data, cache)
        out.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(
            str(fp32), str(out), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types), per_channel=True, reduce_range=False,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            nodes_to_quantize=list(only_nodes) or None, nodes_to_exclude=list(exclude_nodes),
            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    src = onnx.load(str(fp32), load_external_data=False)
    model = onnx.load(str(out))
    restore_metadata(model, [(p.key, p.value) for p in src.metadata_props])
    free_batch(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out
