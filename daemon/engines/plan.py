"""Which engines a config needs: one per model role, at the config's fixed input shape and precision.

The recognizer has two roles when ocr.rec_tail_batch is on: "rec" at rec_batch and "rec_tail" at the
smaller tail batch, two engines from one ONNX (a fixed shape each, so each is its own engine file).

`build-engine` builds exactly these, the TensorRT backend loads exactly these and `doctor` checks exactly
these, so the three cannot disagree about file names, source ONNX files or shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from daemon.backends.base import ModelSpec
from daemon.config import Config, OcrConfig, config_option
from daemon.ocr import models, rec_head
from daemon.ocr.rec_pre import CLS_HEIGHT, CLS_WIDTH


@dataclass(frozen=True)
class EnginePlan:
    role: str                       # "det", "rec", "rec_tail" or "cls"
    model_stem: str                 # stem of the FP32 ONNX
    source_onnx: Path               # what the engine is built from: FP32 ONNX, or the Q/DQ ONNX for int8
    input_shape: tuple[int, ...]    # the one fixed NCHW shape (min = opt = max)
    precision: str                  # fp32, fp16 or int8
    head: str = rec_head.MODEL      # rec_head.TOP3: the engine is built from the recognizer with a top-3 head

    @property
    def engine_stem(self) -> str:
        """Names the engine file: the model and its batch (rec and rec_tail share a model)."""
        return f"{self.model_stem}.b{self.input_shape[0]}"


# TensorRT engines return the recognizer's top 3 classes per step: the CPU then decodes 3 values a step instead of
# an argmax over every class, and the host receives a small copy (bench/RESULTS.md section 36).
ENGINE_REC_HEAD = rec_head.TOP3


def rebuild_command(precision: str, config_path: str | None = None) -> str:
    """The build-engine line a message suggests; ``config_path``: Config.source_path where known."""
    return f"ocr-daemon build-engine {config_option(config_path)} --precision {precision}"


def plan_for_spec(spec: ModelSpec, precision: str, engines_dir: str | Path) -> EnginePlan:
    """The engine behind one model the pipeline loads; int8 engines come from `calibrate`'s Q/DQ ONNX
    (explicit quantization: the one INT8 path that TensorRT 8.6, 10 and 11 all accept)."""
    fp32 = Path(spec.onnx_path)
    if precision == "int8" and spec.role == "cls":
        # calibrate quantizes det and rec only (the CPU pipeline keeps cls in float too); the tiny
        # classifier runs as FP16, which loses nothing measurable for a 2-class decision.
        precision = "fp16"
    source = models.int8_path(engines_dir, fp32) if precision == "int8" else fp32
    return EnginePlan(spec.role, fp32.stem, source, tuple(int(d) for d in spec.input_shape), precision, spec.head)


def specs_for(o: OcrConfig, paths: models.ModelPaths, head: str = rec_head.MODEL) -> list[ModelSpec]:
    """The models the OCR pipeline loads, with their fixed input shapes (FP32 ONNX paths); the recognizer's with
    the head ``head`` (the backend's: rec_head.py)."""
    h, w = o.det_input_size
    line = (3, o.rec_height, o.rec_width)
    specs = [ModelSpec("det", str(paths.det), (o.det_batch, 3, h, w)),
             ModelSpec("rec", str(paths.rec), (o.rec_batch, *line), head)]
    if o.rec_tail_batch:
        specs.append(ModelSpec("rec_tail", str(paths.rec), (o.rec_tail_batch, *line), head))
    if paths.cls is not None:
        specs.append(ModelSpec("cls", str(paths.cls), (o.rec_batch, 3, CLS_HEIGHT, CLS_WIDTH)))
    return specs


def model_specs(cfg: Config, head: str = rec_head.MODEL) -> list[ModelSpec]:
    """The models the OCR pipeline loads for this config, with their fixed input shapes."""
    return specs_for(cfg.ocr, models.resolve(cfg), head)


def plan_engines(cfg: Config, precision: str | None = None) -> list[EnginePlan]:
    precision = precision or cfg.ocr.precision
    return [plan_for_spec(spec, precision, cfg.engines.dir) for spec in model_specs(cfg, ENGINE_REC_HEAD)]
