"""Checks of the TensorRT code against NVIDIA's real Python bindings, on a machine without TensorRT."""
