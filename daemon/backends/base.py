"""The one interface every inference backend implements: named inputs -> named outputs, fixed shapes.

A backend loads one model per role ("det", "rec", "cls") at the fixed input shape the pipeline feeds;
the pipeline never learns which backend runs it.
"""
from __future__ import annotations

import abc
import threading
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from daemon.ocr.det_pre import Letterbox, Letterboxer
from daemon.ocr.rec_head import MODEL


class BackendError(RuntimeError):
    """A model or engine that cannot be loaded or run; the message says what to do about it."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class ModelSpec:
    role: str                       # "det", "rec" or "cls"
    onnx_path: str                  # the FP32 (or Q/DQ INT8) ONNX the model comes from
    input_shape: tuple[int, ...]    # fixed NCHW shape the pipeline feeds
    head: str = MODEL               # the recognizer's outputs: as shipped, or its top 3 (daemon/ocr/rec_head.py)


class Model(abc.ABC):
    """One loaded network. ``run`` takes and returns host arrays of the declared fixed shapes."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @abc.abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ...

    def close(self) -> None:
        """Frees what the model holds; the default has nothing to free."""

    def metadata(self) -> dict[str, str] | None:
        """The ONNX metadata (the recognizer's dictionary) where the backend has read it already, else None."""
        return None

    def class_count(self) -> int:
        """A recognizer's number of classes (C of its N x T x C softmax); -1 where only a call tells. A top-3
        head's outputs do not show it: such a model says what its source declares."""
        return self.outputs[0].shape[-1]

    @property
    def input_name(self) -> str:
        return self.inputs[0].name

    @property
    def output_name(self) -> str:
        return self.outputs[0].name

    def run1(self, x: np.ndarray) -> np.ndarray:
        """Single-input, single-output convenience used by the OCR stages."""
        return self.run({self.input_name: x})[self.output_name]

    def run_frames(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        """Detector entry: BGR uint8 frames -> probability maps (N x 1 x H x W) and each frame's letterbox.

        len(frames) <= the fixed batch; unused slots are zero. The CPU way is here; a GPU backend
        overrides it to letterbox on the device straight into its input buffer.
        """
        # One Letterboxer per calling thread (the detector's): its batch buffer is reused, never shared.
        local = self.__dict__.setdefault("_letterboxers", threading.local())
        letterbox = getattr(local, "letterbox", None)
        if letterbox is None:
            n, _, in_h, in_w = self.inputs[0].shape
            letterbox = local.letterbox = Letterboxer(n, in_h, in_w)
        batch, boxes = letterbox(frames)
        return self.run1(batch), boxes

    def detector(self):
        """This model as the pipeline's detector (daemon.ocr.detector): the CPU way runs it in submit;
        a GPU backend returns its own, which overlaps when it has more than one buffer set."""
        from daemon.ocr.detector import EagerDetector

        return EagerDetector(self)


class Backend(abc.ABC):
    name: str = ""
    precision: str = "fp32"
    # The recognizer head this backend runs (daemon/ocr/rec_head.py): the pipeline asks for it in its specs.
    rec_head: str = MODEL

    @abc.abstractmethod
    def load(self, spec: ModelSpec) -> Model:
        ...

    def describe(self) -> dict:
        """What goes into the payload's "engine" field."""
        return {"backend": self.name, "precision": self.precision}

    def close(self) -> None:
        """Frees what the backend itself holds beyond its models (a GPU backend: its CUDA context)."""
