"""Sizes of engine IO buffers, from the tensor's numpy dtype.

NVIDIA's nvOCDR sized buffers from the size of the DataType *enum* (always 4) instead of the element
size, so FP16 or INT8 IO tensors got the wrong byte counts. Here the size always comes from
``np.dtype(trt.nptype(dtype)).itemsize``; tests/test_engine_sidecar.py pins that down.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np


@dataclass(frozen=True)
class IoTensor:
    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.shape, self.dtype)


def tensor_nbytes(shape: tuple[int, ...], dtype) -> int:
    """Bytes of a dense tensor: element count times the dtype's itemsize. Dynamic (-1) dims are refused:
    every engine of this daemon has one fixed shape."""
    if any(int(d) < 0 for d in shape):
        raise ValueError(f"shape {tuple(shape)} has a dynamic dimension; engines here are fixed-shape")
    return int(prod(int(d) for d in shape)) * np.dtype(dtype).itemsize
