"""What differs between TensorRT 8.6, 10.x and 11.x, and the fixed-shape logic: pure functions, no TensorRT.
(The same code runs against NVIDIA's real bindings of each version in test_tensorrt_bindings.py.)"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from daemon.backends.base import BackendError, ModelSpec
from daemon.backends.tensorrt.generation import (BuildRecipe, UnsupportedTensorRT, build_recipe, context_memory_api,
                                                 generation, network_flags)
from daemon.backends.tensorrt.shapes import ShapeError, network_input_shape, require_static, resolve_input_shape

DET = (1, 3, 736, 960)


@pytest.mark.parametrize("version, major", [("8.6.1", 8), ("10.3.0", 10), ("10.16.1.11", 10), ("11.4.0.106", 11)])
def test_supported_versions(version, major):
    assert generation(version).major == major


@pytest.mark.parametrize("version", ["8.5.3", "9.3.0", "10.0.1", "12.0", "abc"])
def test_unsupported_versions_are_refused_naming_what_is_supported(version):
    with pytest.raises(UnsupportedTensorRT, match="8.6|major"):
        generation(version)


def test_jetpack_6_0_tensorrt_8_6_needs_the_explicit_batch_flag():
    recipe = build_recipe(generation("8.6.1"), "fp32")
    assert recipe.explicit_batch_flag
    trt = SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace(EXPLICIT_BATCH=0))
    assert network_flags(trt, recipe) == 1
    assert network_flags(trt, build_recipe(generation("10.3.0"), "fp32")) == 0


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "10.16.1.11"])
def test_builder_flags_before_11_int8_keeps_its_float_layers_in_fp16(version):
    gen = generation(version)
    assert build_recipe(gen, "fp32") == BuildRecipe(gen.major < 10, (), "fp32")
    assert build_recipe(gen, "fp16").builder_flags == ("FP16",)
    int8 = build_recipe(gen, "int8")
    assert set(int8.builder_flags) == {"INT8", "FP16"} and int8.source == "qdq"


def test_tensorrt_11_is_strongly_typed_precision_comes_from_the_onnx():
    gen = generation("11.4.0.106")
    assert [build_recipe(gen, p) for p in ("fp32", "fp16", "int8")] == [
        BuildRecipe(False, (), "fp32"), BuildRecipe(False, (), "fp16"), BuildRecipe(False, (), "qdq_fp16")]


def test_context_memory_api_per_generation():
    old, new = context_memory_api(generation("8.6.1")), context_memory_api(generation("10.3.0"))
    assert (old.user_managed_strategy, old.size_attribute, old.set_device_memory) == (False, "device_memory_size", False)
    assert (new.user_managed_strategy, new.size_attribute, new.set_device_memory) == (True, "device_memory_size_v2", True)
    assert context_memory_api(generation("11.4.0.106")) == new


# ---- fixed shapes ----

def test_network_inputs_take_the_config_shape_where_the_onnx_is_dynamic():
    assert network_input_shape("x", (-1, 3, -1, -1), DET) == DET
    assert network_input_shape("x", DET, DET) == DET
    with pytest.raises(ShapeError, match=r"declared \(1, 3, 640, 640\)"):
        network_input_shape("x", (1, 3, 640, 640), DET)
    with pytest.raises(ShapeError):
        network_input_shape("x", (-1, 3, -1), DET)


def test_a_static_engine_runs_as_built_and_refuses_another_shape():
    assert resolve_input_shape("x", DET, DET) == (DET, False)
    with pytest.raises(ShapeError, match="fixed at"):
        resolve_input_shape("x", (1, 3, 640, 640), DET)


def test_a_dynamic_engine_is_resolved_within_its_profile():
    profile = [(1, 3, 32, 32), DET, (4, 3, 1024, 1024)]
    assert resolve_input_shape("x", (-1, 3, -1, -1), DET, profile) == (DET, True)
    with pytest.raises(ShapeError, match="outside the engine's profile"):
        resolve_input_shape("x", (-1, 3, -1, -1), (1, 3, 2048, 2048), profile)
    with pytest.raises(ShapeError, match="no optimization profile"):
        resolve_input_shape("x", (-1, 3, -1, -1), DET, None)
    with pytest.raises(ShapeError, match="dim 1"):
        resolve_input_shape("x", (-1, 1, -1, -1), DET, profile)


def test_outputs_left_dynamic_after_the_input_is_set_are_refused():
    assert require_static("y", (1, 1, 736, 960)) == (1, 1, 736, 960)
    with pytest.raises(ShapeError, match="still has a dynamic shape"):
        require_static("y", (1, 1, -1, 960))


# ---- every failure while loading is a BackendError (auto falls back instead of crash-looping) ----

class _Ctx:
    facts = SimpleNamespace(integrated=False)

    def active(self):
        from contextlib import nullcontext

        return nullcontext()


def test_a_gpu_model_that_cannot_load_raises_backend_error_naming_the_cause():
    from daemon.backends.tensorrt.engine import TrtModel
    from daemon.config import GpuConfig

    def open_session(alloc, contexts):
        raise RuntimeError("cuMemAlloc failed: out of memory")      # as pycuda.driver.MemoryError reads

    # Without pycuda (CI) its ImportError, with it (the GPU machine) the session's error: a BackendError.
    with pytest.raises(BackendError, match="det engine could not be loaded: (ModuleNotFoundError|RuntimeError: cuMemAlloc)"):
        TrtModel(_Ctx(), open_session, ModelSpec("det", "m.onnx", DET), GpuConfig())
