"""FP32 ONNX -> Q/DQ INT8 ONNX with ONNX Runtime's quantize_static, in the form TensorRT expects.

Symmetric INT8 activations and per-channel symmetric INT8 weights (zero points 0: TensorRT's explicit
quantization accepts nothing else), biases left in float (TensorRT fuses them in float). Activation
ranges are collected chunk by chunk into one histogram, then handed to quantize_static through its
calibration cache: collecting all calibration batches at once holds every intermediate tensor in memory
(200 recognizer lines ran out of 24 GiB), and ORT's CalibMaxIntermediateOutputs drops batches.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from daemon.quantize.prepare import restore_metadata
from daemon.quantize.readers import FeedReader

# Entropy calibration needs a fine histogram: ORT's default of 128 bins leaves only the full range.
ENTROPY_BINS = 2048


@dataclass(frozen=True)
class QdqSettings:
    method: str                          # "entropy" or "minmax"
    op_types: tuple[str, ...]            # op types that get Q/DQ (the rest stays float)
    exclude_nodes: tuple[str, ...] = ()  # node names kept in float
    chunk_batches: int = 4               # calibration batches per histogram update (memory bound)


def quantize_qdq(fp32: Path, out: Path, batches: Sequence[np.ndarray], settings: QdqSettings,
                 progress: Callable[[int], None] = lambda n: None) -> Path:
    """Calibrates on batches (inputs of fp32's fixed shape) and writes the Q/DQ model to out."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    if not batches:
        raise ValueError(f"no calibration batches for {fp32}")
    method = {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax}[settings.method]
    calib_options = {"symmetric": True}
    if method == CalibrationMethod.Entropy:
        calib_options["num_bins"] = ENTROPY_BINS
    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="ocr-calib-") as tmp:
        calibrator = create_calibrator(fp32, list(settings.op_types),
                                       augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=method, extra_options=calib_options)
        for first in range(0, len(batches), settings.chunk_batches):
            chunk = batches[first:first + settings.chunk_batches]
            calibrator.collect_data(FeedReader(input_name, chunk))   # histograms merge across calls
            progress(len(chunk))
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(calibrator.compute_data(), cache)
        del calibrator
        out.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(
            str(fp32), str(out), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(settings.op_types), per_channel=True, reduce_range=False,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=list(settings.exclude_nodes), calibrate_method=method,
            calibration_cache_path=str(cache),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    src = onnx.load(str(fp32), load_external_data=False)
    model = onnx.load(str(out))
    restore_metadata(model, [(p.key, p.value) for p in src.metadata_props])
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out
