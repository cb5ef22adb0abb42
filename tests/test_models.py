"""Model files: found in the installed wheel, and clear errors naming the path when they are bad."""
import pytest

from daemon import config
from daemon.backends.base import BackendError
from daemon.ocr import models
from daemon.ocr.pipeline import OcrPipeline


def test_default_models_come_from_the_installed_wheels_with_their_dictionary():
    paths = models.resolve(config.from_dict({}))
    # the default model set is pp-ocrv6-small, shipped in the rapidocr 3.10 wheel
    assert "rapidocr" in paths.det.parts and paths.det.name == "PP-OCRv6_det_small.onnx"
    assert "rapidocr" in paths.rec.parts and paths.rec.name == "PP-OCRv6_rec_small.onnx"
    charset = models.load_charset(paths.rec, None)     # PP-OCRv6 small's, from its metadata
    assert len(charset) == 18710 and charset[0] == "<blank>" and charset[-1] == " "


def test_malformed_model_file_names_its_path(tmp_path):
    bad = tmp_path / "det.onnx"
    bad.write_bytes(b"this is not an onnx model")
    cfg = config.from_dict({"backend": "onnxruntime", "ocr": {"det_model": str(bad)}})
    with pytest.raises(BackendError, match="det.onnx"):
        OcrPipeline.from_config(cfg)


def test_recognizer_without_dictionary_metadata_asks_for_one(tmp_path):
    det = models.resolve(config.from_dict({})).det     # an ONNX file with no 'character' metadata
    with pytest.raises(models.ModelFileError, match="ocr.dictionary"):
        models.load_charset(det, None)


def test_dictionary_that_does_not_fit_the_recognizer_is_refused(tmp_path):
    short = tmp_path / "dict.txt"
    short.write_text("a\nb\nc\n", encoding="utf-8")
    cfg = config.from_dict({"backend": "onnxruntime", "ocr": {"dictionary": str(short),
                                                              "use_angle_classifier": False}})
    with pytest.raises(models.ModelFileError, match="18710 classes"):
        OcrPipeline.from_config(cfg)


def test_int8_without_calibrated_models_names_the_calibrate_command(tmp_path):
    cfg = config.from_dict({"backend": "onnxruntime", "ocr": {"precision": "int8"},
                            "engines": {"dir": str(tmp_path)}})
    with pytest.raises(models.ModelFileError, match="ocr-daemon calibrate"):
        OcrPipeline.from_config(cfg)
