"""Where the models and the character dictionary come from: config paths, else the rapidocr wheel.

The default PP-OCRv4 mobile models ship inside the PyPI wheel rapidocr-onnxruntime==1.4.4; they are found
through the installed package (never downloaded). The recognizer's dictionary is in its ONNX metadata.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from daemon.config import Config

_WHEEL = "rapidocr_onnxruntime"
_DEFAULTS = {
    "det": "ch_PP-OCRv4_det_infer.onnx",
    "rec": "ch_PP-OCRv4_rec_infer.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
}


class ModelFileError(RuntimeError):
    """A model or dictionary file that is missing or malformed; the message names the path."""


@dataclass(frozen=True)
class ModelPaths:
    det: Path
    rec: Path
    cls: Path | None
    dictionary: Path | None   # None: the dictionary is read from the rec model's metadata


def bundled_model_dir() -> Path:
    spec = importlib.util.find_spec(_WHEEL)   # locates the package without importing onnxruntime through it
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"the default models come from the Python package rapidocr-onnxruntime==1.4.4, which is not installed; "
            f"`pip install rapidocr-onnxruntime==1.4.4` or set ocr.det_model / ocr.rec_model in config.yaml")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def int8_path(engines_dir: str | Path, fp32_path: Path) -> Path:
    """Where `ocr-daemon calibrate` writes the Q/DQ INT8 twin of an FP32 model."""
    return Path(engines_dir) / f"{fp32_path.stem}.int8.qdq.onnx"


def resolve(cfg: Config) -> ModelPaths:
    """FP32 model paths from the config (null = bundled), each checked to exist."""
    o = cfg.ocr

    def pick(role: str, configured: str | None) -> Path:
        path = Path(configured) if configured else bundled_model_dir() / _DEFAULTS[role]
        if not path.is_file():
            raise ModelFileError(f"ocr.{role}_model: model file {str(path)!r} does not exist")
        return path

    return ModelPaths(
        det=pick("det", o.det_model),
        rec=pick("rec", o.rec_model),
        cls=pick("cls", o.cls_model) if o.use_angle_classifier else None,
        dictionary=Path(o.dictionary) if o.dictionary else None,
    )


def load_charset(rec_model: Path, dictionary: Path | None, metadata: dict[str, str] | None = None) -> list[str]:
    """CTC classes: index 0 is the blank, then the dictionary, then a space (PaddleOCR's use_space_char).

    ``metadata`` is the rec model's metadata when a backend has already read it (ONNX Runtime does, for
    free); without it the ONNX file is read with the onnx package, whose import alone costs about a second.
    """
    if dictionary is not None:
        try:
            chars = dictionary.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"ocr.dictionary: cannot read {str(dictionary)!r} ({exc})") from None
    elif metadata is not None:
        chars = _charset_from(metadata, rec_model)
    else:
        chars = _metadata_charset(rec_model)
    chars = [c.rstrip("\r\n") for c in chars]
    if not chars:
        raise ModelFileError(f"the character dictionary from {str(dictionary or rec_model)!r} is empty")
    return ["<blank>"] + chars + [" "]


def _metadata_charset(rec_model: Path) -> list[str]:
    import onnx

    try:
        # The weights are not needed for the metadata; load_external_data=False keeps this cheap.
        model = onnx.load(str(rec_model), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends, all meaning "not an ONNX file"
        raise ModelFileError(f"{str(rec_model)!r} is not a readable ONNX model ({exc})") from None
    return _charset_from({p.key: p.value for p in model.metadata_props}, rec_model)


def _charset_from(meta: dict[str, str], rec_model: Path) -> list[str]:
    if "character" not in meta:
        raise ModelFileError(
            f"{str(rec_model)!r} carries no 'character' metadata: set ocr.dictionary to its dictionary file")
    return meta["character"].splitlines()
