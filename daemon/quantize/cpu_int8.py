"""The CPU's INT8 copy of a detector, for ONNX Runtime's integer kernels; shipped in daemon/models/.

    python -m daemon.quantize.cpu_int8 [MODEL.onnx] [--out daemon/models] [--frames 28] [--exclude NODE ...]

PP-OCRv6 small's detector spends most of its FP32 time in dense convolutions, which ONNX Runtime runs much
faster as u8 x s8 integer kernels on x86 (bench/RESULTS.md section 25; ARM's dot-product kernels, a Jetson's
CPU fallback, were not run).
This writes that copy: opset raised to 17 (per-channel Q/DQ needs 13), ONNX Runtime's own pre-processing
(its basic graph optimizations: each conv's bias Add folded in, Identity nodes gone), the erf-form GELU
as one Gelu node (ONNX Runtime fuses it in FP32 but not between Q/DQ pairs), then
``onnxruntime.quantization.quantize_static``: asymmetric u8 activations, s8 per-channel weights, Q/DQ
format, the convolutions measured as sensitive kept in float (KEPT_IN_FLOAT), MinMax ranges over
rendered labels letterboxed as the pipeline letterboxes them (daemon.samples: seeds CALIBRATION_SEED..,
every ordinary and hard variant in turn, as JPEG like a camera's).

It is a CPU format. TensorRT builds from the FP32 file and its own calibration (`ocr-daemon calibrate`),
whose symmetric Q/DQ ONNX Runtime runs at half speed. The copy is made once, here, and shipped, so every
box runs the same bytes and nothing is calibrated at start-up. A JSON sidecar names its source by sha256;
the daemon runs the copy only for that exact file (daemon/backends/onnxruntime/int8_copy.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from daemon.backends.onnxruntime.int8_copy import SHIPPED_DIR, copy_paths, sha256_of

CALIBRATION_SEED = 9000      # the bench sets use 1200.., 6000.., 7000..: calibration sees none of them
CALIBRATION_FRAMES = 28      # two of each of the 14 variants
CALIBRATION_INPUT = (736, 960)
OPSET = 17
# Convolutions kept in float, by source file. PP-OCRv6 small's first two (its stem, at 1/2 and 1/4 of the
# frame's size): in INT8 they cost accuracy on real photographs and hard labels, in float nothing in speed
# (bench/RESULTS.md section 25).
KEPT_IN_FLOAT = {"PP-OCRv6_det_small.onnx": ("Conv.0", "Conv.1")}


def fuse_gelu(model) -> int:
    """Rewrites each x * 0.5 * (1 + erf(x / sqrt 2)) chain, as PaddlePaddle exports GELU, into one
    com.microsoft Gelu node, in place; returns how many. Exact: the same function, one kernel."""
    from onnx import helper, numpy_helper

    g = model.graph
    scalars = {i.name: float(numpy_helper.to_array(i).reshape(())) for i in g.initializer
               if int(np.prod(i.dims)) == 1}
    consumers: dict[str, list] = {}
    for n in g.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)

    def only(name: str, op: str):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def near(name: str, value: float) -> bool:
        return name in scalars and abs(scalars[name] - value) < 1e-4 * max(1.0, abs(value))

    replaced: dict[int, object] = {}
    dropped: set[int] = set()
    for div in g.node:
        if div.op_type != "Div" or not near(div.input[1], 2.0 ** 0.5):
            continue
        x = div.input[0]
        erf = only(div.output[0], "Erf")
        add = erf and only(erf.output[0], "Add")
        mul = add and only(add.output[0], "Mul")
        half = mul and only(mul.output[0], "Mul")
        if not (half and near(add.input[1], 1.0) and x in mul.input and near(half.input[1], 0.5)):
            continue
        chain = (div, erf, add, mul, half)
        if any(id(n) in dropped for n in chain):
            continue
        dropped.update(id(n) for n in chain)
        replaced[id(div)] = helper.make_node("Gelu", [x], [half.output[0]], name=f"{div.name}_gelu",
                                             domain="com.microsoft")
    if not replaced:
        return 0
    kept = [replaced.get(id(n), n) for n in g.node if id(n) in replaced or id(n) not in dropped]
    del g.node[:]
    g.node.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(replaced)


def calibration_inputs(n: int = CALIBRATION_FRAMES, seed: int = CALIBRATION_SEED,
                       size: tuple[int, int] = CALIBRATION_INPUT) -> Iterator[np.ndarray]:
    """1 x 3 x H x W detector inputs of rendered labels, each variant in turn; deterministic in the args."""
    import cv2

    from daemon.ocr.det_pre import preprocess_det
    from daemon.samples.render import ALL_VARIANTS, render_label

    for i in range(n):
        sample = render_label(seed + i, variant=ALL_VARIANTS[i % len(ALL_VARIANTS)])
        ok, jpeg = cv2.imencode(".jpg", sample.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        frame = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        yield preprocess_det(frame, *size)[0][None]


def build(source: Path, out_dir: Path, frames: int = CALIBRATION_FRAMES,
          exclude: Sequence[str] = ()) -> tuple[Path, dict]:
    """Writes the INT8 copy of ``source`` and its sidecar into out_dir; returns (model path, sidecar)."""
    import onnx
    import onnxruntime as ort
    from onnx import version_converter
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_path, sidecar_path = copy_paths(source.name, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raised, prepared = Path(tmp) / "opset.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(version_converter.convert_version(onnx.load(str(source)), OPSET), str(raised))
        quant_pre_process(str(raised), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        gelus = fuse_gelu(model)
        onnx.save(model, str(prepared))
        input_name = model.graph.input[0].name

        class Frames(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = calibration_inputs(frames)

            def get_next(self):
                x = next(self._it, None)
                return None if x is None else {input_name: x}

        quantize_static(str(prepared), str(model_path), Frames(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(exclude))
    sidecar = {
        "source": source.name,
        "source_sha256": sha256_of(source),
        "sha256": sha256_of(model_path),
        "format": "Q/DQ, u8 asymmetric activations, s8 per-channel weights, opset 17 + com.microsoft Gelu",
        "gelu_fused": gelus,
        "kept_in_float": list(exclude),
        "calibration": {"method": "MinMax", "frames": frames, "first_seed": CALIBRATION_SEED,
                        "input": list(CALIBRATION_INPUT), "images": "daemon.samples.render, all variants in turn, JPEG 90"},
        "written_by": {"onnxruntime": ort.__version__, "onnx": onnx.__version__},
        "rebuild": "python -m daemon.quantize.cpu_int8 [the FP32 detector]",
    }
    sidecar_path.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return model_path, sidecar


def main(argv: Sequence[str] | None = None) -> int:
    from daemon.ocr.models import MODEL_SETS, bundled_model_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="FP32 detector ONNX (default: pp-ocrv6-small's, from its wheel)")
    ap.add_argument("--out", type=Path, default=SHIPPED_DIR, help=f"where to write it (default: {SHIPPED_DIR})")
    ap.add_argument("--frames", type=int, default=CALIBRATION_FRAMES, help="calibration frames")
    ap.add_argument("--exclude", nargs="*", default=None,
                    help="node names kept in float (default: the measured ones of KEPT_IN_FLOAT for this file)")
    args = ap.parse_args(argv)
    source = Path(args.model) if args.model else (bundled_model_dir("pp-ocrv6-small", "det")
                                                  / MODEL_SETS["pp-ocrv6-small"]["det"][1])
    if not source.is_file():
        print(f"{source}: no such model file", file=sys.stderr)
        return 2
    exclude = KEPT_IN_FLOAT.get(source.name, ()) if args.exclude is None else args.exclude
    path, sidecar = build(source, args.out, args.frames, exclude)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {sidecar['gelu_fused']} GELUs fused) from "
          f"{source} ({sidecar['source_sha256'][:12]}), calibrated on {args.frames} rendered labels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
