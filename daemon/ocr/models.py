"""Where the models and the character dictionary come from: config paths, else a wheel's bundled set.

Null model paths mean the files of `ocr.model_set`, found inside an installed PyPI wheel (never downloaded,
never imported: the package is only located). The recognizer's dictionary is in its ONNX metadata.

All sets take the same pre- and post-processing, so a set is only its files (checked in the graphs and in
RapidOCR 3.10's own config.yaml and det/rec code): det input (x/255 - 0.5) / 0.5 of BGR pixels; the det
graph ends in a Sigmoid (its output name comes from a ConvTranspose, its value is already a probability);
DB thresh 0.3, box_thresh 0.5, unclip 1.6 with a 2x2 dilation, as ours (but our unclip is 1.4: RESULTS.md
section 43); rec input 3 x 48 x W normalized like det; CTC over blank + the metadata's characters + space (6625
classes for v4, 18710 for v6 small).
The 0/180 classifier file of both wheels is the same (byte for byte).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from daemon.config import Config


@dataclass(frozen=True)
class Wheel:
    package: str          # import name of the wheel that carries the files (located, never imported)
    install: str          # the command that installs it, for the error message


RAPIDOCR_1_4 = Wheel("rapidocr_onnxruntime", "pip install rapidocr-onnxruntime==1.4.4")
# --no-deps: rapidocr 3.10 declares opencv-python-headless, whose cv2 would replace opencv-python's.
RAPIDOCR_3_10 = Wheel("rapidocr", "pip install --no-deps rapidocr==3.10.0")

# role -> (wheel, file name in the wheel's models/ folder)
ModelSet = dict[str, tuple[Wheel, str]]

_V4 = {"det": (RAPIDOCR_1_4, "ch_PP-OCRv4_det_infer.onnx"),
       "rec": (RAPIDOCR_1_4, "ch_PP-OCRv4_rec_infer.onnx"),
       "cls": (RAPIDOCR_1_4, "ch_ppocr_mobile_v2.0_cls_infer.onnx")}
_V6_REC = (RAPIDOCR_3_10, "PP-OCRv6_rec_small.onnx")

MODEL_SETS: dict[str, ModelSet] = {
    "pp-ocrv4": _V4,
    "pp-ocrv6-small": {"det": (RAPIDOCR_3_10, "PP-OCRv6_det_small.onnx"), "rec": _V6_REC,
                       "cls": (RAPIDOCR_3_10, "ch_ppocr_mobile_v2.0_cls_mobile.onnx")},
    # The default before pp-ocrv6-small: v4's detector (FP32 on the CPU, a little faster as processes than
    # v6's INT8 copy) with v6 small's recognizer: bench/RESULTS.md sections 20b, 22 and 25.
    "pp-ocrv4-det-v6-rec": {**_V4, "rec": _V6_REC},
}


class ModelFileError(RuntimeError):
    """A model or dictionary file that is missing or malformed; the message names the path."""


@dataclass(frozen=True)
class ModelPaths:
    det: Path
    rec: Path
    cls: Path | None
    dictionary: Path | None   # None: the dictionary is read from the rec model's metadata


def bundled_model_dir(model_set: str = "pp-ocrv4", role: str = "det") -> Path:
    """The models/ folder of the installed wheel that carries `model_set`'s file for `role`."""
    wheel, _ = MODEL_SETS[model_set][role]
    spec = importlib.util.find_spec(wheel.package)   # locates the package without importing it (or onnxruntime)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"ocr.model_set {model_set}: its {role} model comes from the Python package {wheel.package}, which is "
            f"not installed; `{wheel.install}` or set ocr.{role}_model in config.yaml")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def int8_path(engines_dir: str | Path, fp32_path: Path) -> Path:
    """Where `ocr-daemon calibrate` writes the Q/DQ INT8 twin of an FP32 model."""
    return Path(engines_dir) / f"{fp32_path.stem}.int8.qdq.onnx"


def resolve(cfg: Config) -> ModelPaths:
    """FP32 model paths from the config (null = the file of ocr.model_set), each checked to exist."""
    o = cfg.ocr

    def pick(role: str, configured: str | None) -> Path:
        path = Path(configured) if configured else bundled_model_dir(o.model_set, role) / MODEL_SETS[o.model_set][role][1]
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
