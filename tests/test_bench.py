"""ocr-daemon bench: models alone replays the pipeline's own inputs, and every reference is in the report."""
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from daemon import bench, config
from daemon.imageio import read_image
from daemon.ocr.det_pre import preprocess_det

SAMPLES = Path(__file__).resolve().parents[1] / "daemon" / "samples"
CPU = {"backend": "onnxruntime"}


@pytest.fixture(scope="module")
def pipeline():
    from daemon.ocr.pipeline import OcrPipeline

    p = OcrPipeline.from_config(config.from_dict(CPU))
    yield p
    p.close()


def test_models_alone_replays_copies_of_the_real_inputs_of_every_model_the_detector_included(pipeline):
    recorder = bench._Recorder()
    bench._time_models(pipeline, recorder)
    frame = read_image(SAMPLES / "label_00100_plain.png")
    pipeline.run(frame)
    roles = {}
    for model, feeds in recorder.calls:
        roles.setdefault(next(r for r in ("det", "rec_tail", "rec", "cls")
                              if getattr(pipeline, r) is not None and getattr(pipeline, r).inner is model), []).append(feeds)
    assert len(roles["det"]) == 1 and roles["rec"] and roles["cls"]
    det_in = next(iter(roles["det"][0].values()))
    expected, _ = preprocess_det(frame, *det_in.shape[2:])
    np.testing.assert_array_equal(det_in[0], expected)         # the letterboxed frame, not zeros
    rec_ins = [next(iter(f.values())) for f in roles["rec"] + roles.get("rec_tail", [])]
    assert all(np.abs(x).sum() > 0 for x in rec_ins)
    # the pipeline refills one buffer per batch size: each call's copy must keep what that call was fed
    same_size = [x for x in rec_ins if x.shape == rec_ins[0].shape]
    assert len(same_size) < 2 or not np.array_equal(same_size[0], same_size[1])
    assert recorder.inside_ms > 0
    recorder.clear()
    assert recorder.calls == []


def _two_labels(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted(SAMPLES.glob("*.png"))[:2]:
        shutil.copy(p, images / p.name)
    shutil.copy(SAMPLES / "labels.jsonl", images / "labels.jsonl")
    return images


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("rapidocr") is None,
                    reason="rapidocr 3.10 is not installed (scripts/setup.sh installs it with --no-deps)")
def test_bench_reports_the_pipeline_models_alone_and_both_rapidocr_versions_with_accuracy(tmp_path):
    report = bench.run_bench(config.from_dict(CPU), _two_labels(tmp_path), repeat=1, with_rapidocr=True,
                             with_rapidocr3=True)
    assert set(report["systems"]) == {"pipeline", "models_alone", "rapidocr", "rapidocr3"}
    assert all(s["images_per_s"] > 0 for s in report["systems"].values())
    assert report["speedup_vs_rapidocr"] > 0 and report["speedup_vs_rapidocr3"] > 0
    assert "1.4.4" in report["references"]["rapidocr"] and "3.10" in report["references"]["rapidocr3"]
    assert "PP-OCRv6" in report["references"]["rapidocr3"]
    for system in ("pipeline", "rapidocr", "rapidocr3"):
        acc = report["accuracy"][system]
        assert acc["lines"] == 20 and acc["line_recall"] == 1.0 and acc["cer"] < 0.02
    assert "cer_rapidocr3_where_differ" in report["accuracy"]["agreement_rapidocr3"]
    assert 0.0 < report["overhead_share"] < 1.0
    table = bench.format_table(report)
    assert "| rapidocr3 |" in table and "throughput vs rapidocr3" in table


def test_bench_without_rapidocr_3_says_why_in_one_line_and_still_runs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rapidocr", None)      # import rapidocr now raises ImportError
    # without the rapidocr 3.10 wheel only PP-OCRv4's own set is there (the default needs its recognizer)
    v4 = {**CPU, "ocr": {"model_set": "pp-ocrv4"}}
    report = bench.run_bench(config.from_dict(v4), _two_labels(tmp_path), repeat=1, with_rapidocr=False,
                             with_rapidocr3=True)
    assert set(report["systems"]) == {"pipeline", "models_alone"}
    assert len(report["notes"]) == 1 and "RapidOCR 3.10 skipped" in report["notes"][0]
    assert "pip install --no-deps rapidocr==3.10.0" in report["notes"][0]
    assert report["notes"][0] in bench.format_table(report)
