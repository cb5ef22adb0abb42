"""The one interface every inference backend implements: named inputs -> named outputs, fixed shapes.

A backend loads one model per role ("det", "rec", "cls") at the fixed input shape the pipeline feeds;
the pipeline never learns which backend runs it.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Mapping

import numpy as np


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


class Model(abc.ABC):
    """One loaded network. ``run`` takes and returns host arrays of the declared fixed shapes."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @abc.abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ...

    def close(self) -> None:
        """Frees what the model holds; the default has nothing to free."""

    @property
    def input_name(self) -> str:
        return self.inputs[0].name

    @property
    def output_name(self) -> str:
        return self.outputs[0].name

    def run1(self, x: np.ndarray) -> np.ndarray:
        """Single-input, single-output convenience used by the OCR stages."""
        return self.run({self.input_name: x})[self.output_name]


class Backend(abc.ABC):
    name: str = ""
    precision: str = "fp32"

    @abc.abstractmethod
    def load(self, spec: ModelSpec) -> Model:
        ...

    def describe(self) -> dict:
        """What goes into the payload's "engine" field."""
        return {"backend": self.name, "precision": self.precision}
