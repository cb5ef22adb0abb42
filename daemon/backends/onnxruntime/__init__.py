"""ONNX Runtime on the CPU: development, CI, non-NVIDIA boxes, and the accuracy reference for INT8.

It runs the same FP32 and Q/DQ INT8 ONNX files that TensorRT engines are built from.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from daemon.backends.base import Backend, BackendError, Model, ModelSpec, TensorSpec
from daemon.backends.onnxruntime.threads import default_threads
from daemon.ocr.rec_head import MODEL, TOP3, declared_classes, top3_model

log = logging.getLogger(__name__)


def session_options(threads: int, exact_qdq: bool = False, spinning: bool = False):
    """ONNX Runtime's options for one of our models.

    Spinning is off: with it on, idle pool threads spin between the pipeline's many short calls and take
    the cores from the Python work in between and from a neighbour (measured: bench/RESULTS.md section 17a).
    exact_qdq: Q/DQ pairs computed as written, in float (what TensorRT's INT8 kernels compute), not fused
    into ONNX Runtime's u8s8 integer kernels, which saturate on x86 CPUs without VNNI.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if exact_qdq
                                     else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1      # one graph node at a time; the pipeline's threads give the parallelism
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.log_severity_level = 3
    return opts


class OrtModel(Model):
    """One model at one fixed input shape. Models of one ONNX file share a session (ONNX Runtime runs a
    session at any batch its graph allows), so the recognizer's tail batch costs no second session."""

    def __init__(self, spec: ModelSpec, session, in_flight: int = 1, classes: int | None = None):
        self._session = session
        self._in_flight = in_flight
        self._classes = classes        # a top-3 recognizer's class count (its outputs hide it)
        inp, outs = session.get_inputs(), session.get_outputs()
        if len(inp) != 1:
            raise BackendError(f"{spec.role} model {spec.onnx_path!r} has {len(inp)} inputs; expected one image input")
        self.inputs = (TensorSpec(inp[0].name, tuple(spec.input_shape), np.dtype(np.float32)),)
        # The ONNX declares most output dimensions dynamic; -1 stands for those (no warm-up run to learn
        # them: it cost half a second of every start). The batch is the input's.
        self.outputs = tuple(TensorSpec(o.name, _static_dims(o.shape, spec.input_shape[0]), np.dtype(np.float32))
                             for o in outs)

    def detector(self):
        """Two frames in flight: the detector on its own thread, so frame N+1 is detected while frame N
        is recognized (ocr.frames_in_flight; bench/RESULTS.md section 17)."""
        from daemon.ocr.detector import EagerDetector, ThreadedDetector

        return ThreadedDetector(self) if self._in_flight >= 2 else EagerDetector(self)

    def metadata(self) -> dict[str, str]:
        return dict(self._session.get_modelmeta().custom_metadata_map)

    def class_count(self) -> int:
        return self._classes if self._classes is not None else super().class_count()

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for spec in self.inputs:
            if tuple(feeds[spec.name].shape) != spec.shape:
                raise ValueError(f"input {spec.name} has shape {feeds[spec.name].shape}; the model is fixed at {spec.shape}")
        values = self._session.run(None, dict(feeds))
        return {o.name: v for o, v in zip(self.outputs, values)}


def _static_dims(shape, batch: int) -> tuple[int, ...]:
    dims = [d if isinstance(d, int) and d > 0 else -1 for d in shape]
    if dims:
        dims[0] = batch
    return tuple(dims)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, threads: int = 0, precision: str = "fp32", exact_qdq: bool = False, in_flight: int = 1,
                 spinning: bool = False, fold_dir: Optional[Path] = None, int8_det: bool = False,
                 rec_head: str = MODEL):
        """``rec_head``: the recognizer's head (daemon/ocr/rec_head.py). The daemon keeps the model's own: here
        TopK costs more CPU than numpy's argmaxes (bench/RESULTS.md section 36); top3 is for comparing the two."""
        self.rec_head = rec_head
        self.threads = default_threads(threads)
        self.in_flight = in_flight
        self.spinning = spinning       # on is ONNX Runtime's default; both measured in bench/RESULTS.md section 17a
        self.precision = precision
        self.exact_qdq = exact_qdq     # for INT8 accuracy measurements (daemon.quantize.measure)
        # FP32 models run from their folded copies there (fold.py, folded.py); None = as shipped. Q/DQ
        # models are never folded: their convolutions read dequantized weights.
        self.fold_dir = fold_dir if precision == "fp32" and not exact_qdq else None
        # An FP32 detector runs from its shipped INT8 copy where there is one (int8_copy.py).
        self.int8_det = int8_det and precision == "fp32" and not exact_qdq
        self._sessions: dict[str, object] = {}
        self._int8_roles: set[str] = set()     # models running from an INT8 copy: describe() says so

    def load(self, spec: ModelSpec) -> Model:
        if spec.head == TOP3:
            return self._top3_model(spec)
        session = self._sessions.get(spec.onnx_path)
        if session is None:
            import onnxruntime as ort

            opts = session_options(self.threads, self.exact_qdq, self.spinning)
            session = self._int8_session(spec, opts) if spec.role == "det" and self.int8_det else None
            if session is None and self.fold_dir is not None:
                session = self._folded_session(spec, opts)
            if session is None:
                try:
                    session = ort.InferenceSession(spec.onnx_path, sess_options=opts,
                                                   providers=["CPUExecutionProvider"])
                except Exception as exc:   # ORT raises its own exception types for missing and malformed files
                    fix = ("; it is a calibrated INT8 model: write it again with `ocr-daemon calibrate --config FILE "
                           "--images DIR`" if str(spec.onnx_path).endswith(".int8.qdq.onnx") else "")
                    raise BackendError(f"{spec.role} model {spec.onnx_path!r} cannot be loaded: {exc}{fix}") from None
            self._sessions[spec.onnx_path] = session
        return OrtModel(spec, session, self.in_flight)

    def _top3_model(self, spec: ModelSpec) -> Model:
        """The recognizer with its top-3 head, edited in memory from the file the softmax head would load (its
        folded copy where folding is on), so both heads see the same probabilities."""
        import onnx
        import onnxruntime as ort

        key = f"{spec.onnx_path}#{TOP3}"
        session = self._sessions.get(key)
        if session is None:
            source = Path(spec.onnx_path)
            if self.fold_dir is not None:
                from daemon.backends.onnxruntime.folded import folded_path

                source = folded_path(source, self.fold_dir)
            try:
                edited = top3_model(onnx.load(str(source))).SerializeToString()
                session = ort.InferenceSession(edited, sess_options=session_options(self.threads, self.exact_qdq,
                                                                                    self.spinning),
                                               providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise BackendError(f"{spec.role} model {spec.onnx_path!r} with a top-3 head cannot be loaded: "
                                   f"{exc}") from None
            self._sessions[key] = session
        return OrtModel(spec, session, self.in_flight, declared_classes(Path(spec.onnx_path)))

    def _int8_session(self, spec: ModelSpec, opts):
        """A session on the detector's shipped INT8 copy; None to run it in FP32 (no copy for this file)."""
        import onnxruntime as ort

        from daemon.backends.onnxruntime.int8_copy import int8_copy

        path = int8_copy(Path(spec.onnx_path))
        if path is None:
            return None
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:   # e.g. an ONNX Runtime too old for its opset: the FP32 file still runs
            log.warning("the INT8 copy %s of the %s model cannot be loaded (%s); running %s in FP32",
                        path, spec.role, exc, Path(spec.onnx_path).name)
            return None
        self._int8_roles.add(spec.role)
        return session

    def describe(self) -> dict:
        out = super().describe()
        if self._int8_roles:
            out["int8_models"] = sorted(self._int8_roles)
        return out

    def _folded_session(self, spec: ModelSpec, opts):
        """A session on the model's folded copy; None to load the file as shipped (no copy, or a bad one)."""
        import onnxruntime as ort

        from daemon.backends.onnxruntime.folded import discard, folded_path

        source = Path(spec.onnx_path)
        path = folded_path(source, self.fold_dir)
        if path == source:
            return None
        try:
            return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:   # a damaged copy: drop it (the next start writes it again), run the original
            log.warning("folded copy %s of the %s model cannot be loaded (%s); removed, running %s as shipped",
                        path, spec.role, exc, source.name)
            discard(path)
            return None

    def close(self) -> None:
        self._sessions.clear()
