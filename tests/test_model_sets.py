"""ocr.model_set: which bundled models null paths mean, where their files are found, and v6 small reading a label."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import config
from daemon.imageio import read_image
from daemon.ocr import evaluate, models
from daemon.samples.render import read_labels

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "daemon" / "samples"

HAVE_RAPIDOCR3 = importlib.util.find_spec("rapidocr") is not None
needs_rapidocr3 = pytest.mark.skipif(
    not HAVE_RAPIDOCR3, reason="rapidocr 3.10 (the PP-OCRv6 small models) is not installed: "
                               "`pip install --no-deps rapidocr==3.10.0`, as scripts/setup.sh does")
V6 = {"ocr": {"model_set": "pp-ocrv6-small"}}


def test_model_set_defaults_to_pp_ocrv6_small_from_the_rapidocr_3_10_wheel():
    cfg = config.from_dict({})
    assert cfg.ocr.model_set == "pp-ocrv6-small"
    paths = models.resolve(cfg)
    assert "rapidocr" in paths.det.parts and paths.det.name == "PP-OCRv6_det_small.onnx"
    assert "rapidocr" in paths.rec.parts and paths.rec.name == "PP-OCRv6_rec_small.onnx"


def test_pp_ocrv4_takes_every_file_from_the_rapidocr_onnxruntime_wheel():
    paths = models.resolve(config.from_dict({"ocr": {"model_set": "pp-ocrv4"}}))
    for path in (paths.det, paths.rec, paths.cls):
        assert "rapidocr_onnxruntime" in path.parts and path.is_file()
    assert paths.rec.name == "ch_PP-OCRv4_rec_infer.onnx" and len(models.load_charset(paths.rec, None)) == 6625


def test_unknown_model_set_is_refused_naming_the_key_and_the_value():
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"ocr": {"model_set": "pp-ocrv5"}})
    assert err.value.key == "ocr.model_set"
    assert "'pp-ocrv5'" in str(err.value) and "pp-ocrv6-small" in str(err.value)


def test_unknown_model_set_in_a_file_fails_check_config(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("ocr:\n  model_set: v6\n")
    proc = subprocess.run([sys.executable, "-m", "daemon", "check-config", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "ocr.model_set" in proc.stderr and "'v6'" in proc.stderr


@needs_rapidocr3
def test_pp_ocrv6_small_files_come_from_the_installed_rapidocr_3_wheel():
    paths = models.resolve(config.from_dict(V6))
    for path in (paths.det, paths.rec, paths.cls):
        assert "rapidocr" in path.parts and "rapidocr_onnxruntime" not in path.parts and path.is_file()
    assert (paths.det.name, paths.rec.name) == ("PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx")
    assert paths.cls.name == "ch_ppocr_mobile_v2.0_cls_mobile.onnx"
    charset = models.load_charset(paths.rec, None)    # the dictionary from the model's metadata
    assert len(charset) == 18710 and charset[0] == "<blank>" and charset[-1] == " "


@needs_rapidocr3
def test_explicit_model_paths_win_over_the_model_set():
    v4 = models.resolve(config.from_dict({"ocr": {"model_set": "pp-ocrv4"}}))
    cfg = config.from_dict({"ocr": {"model_set": "pp-ocrv6-small", "rec_model": str(v4.rec)}})
    paths = models.resolve(cfg)
    assert paths.rec == v4.rec and paths.det.name == "PP-OCRv6_det_small.onnx"


def test_missing_rapidocr_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name, *a: None if name == "rapidocr" else real(name, *a))
    with pytest.raises(models.ModelFileError) as err:
        models.resolve(config.from_dict(V6))
    assert "pip install --no-deps rapidocr==3.10.0" in str(err.value) and "pp-ocrv6-small" in str(err.value)
    assert models.resolve(config.from_dict({"ocr": {"model_set": "pp-ocrv4"}})).det.is_file()   # v4 does not need it


@needs_rapidocr3
@pytest.mark.parametrize("model_set", ["pp-ocrv6-small", "pp-ocrv4-det-v6-rec"])
def test_v6_small_recognizers_read_the_bundled_plain_label_exactly(model_set):
    from daemon.ocr.pipeline import OcrPipeline

    name = "label_00100_plain.png"
    pipeline = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime", "ocr": {"model_set": model_set}}))
    try:
        assert len(pipeline.charset) == 18710
        result = pipeline.run(read_image(BUNDLED_DIR / name))
    finally:
        pipeline.close()
    truth = [(line.text, line.box) for line in read_labels(BUNDLED_DIR)[name]]
    acc = evaluate.score_image(truth, [(l.text, l.box) for l in result.lines])
    wrong = [(s.truth, s.predicted) for s in acc.lines if s.edits]
    assert wrong == [] and acc.false_positives == 0


@needs_rapidocr3
def test_the_mixed_set_takes_v4s_detector_and_v6_smalls_recognizer_from_their_wheels():
    paths = models.resolve(config.from_dict({"ocr": {"model_set": "pp-ocrv4-det-v6-rec"}}))
    assert "rapidocr_onnxruntime" in paths.det.parts and paths.det.name == "ch_PP-OCRv4_det_infer.onnx"
    assert "rapidocr" in paths.rec.parts and paths.rec.name == "PP-OCRv6_rec_small.onnx"
    assert "rapidocr_onnxruntime" in paths.cls.parts
    assert len(models.load_charset(paths.rec, None)) == 18710


def test_the_default_set_without_rapidocr_3_names_the_role_and_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name, *a: None if name == "rapidocr" else real(name, *a))
    with pytest.raises(models.ModelFileError) as err:
        models.resolve(config.from_dict({}))
    assert "det model" in str(err.value) and "pip install --no-deps rapidocr==3.10.0" in str(err.value)
