"""Two frames in flight on the CPU: the real models, the bundled sample labels, and `once` over a folder."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from daemon import config
from daemon.backends import cpu_frames_in_flight, cpu_rec_batch
from daemon.imageio import read_image
from daemon.ocr.detector import EagerDetector, ThreadedDetector
from daemon.ocr.pipeline import OcrPipeline

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "daemon" / "samples").glob("label_*.png"))


def _pipeline(in_flight: int) -> OcrPipeline:
    return OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime", "ocr": {"frames_in_flight": in_flight}}))


@pytest.fixture(scope="module")
def frames():
    return [read_image(p) for p in SAMPLES]


def test_stream_with_two_in_flight_reads_what_one_at_a_time_reads(frames):
    one, two = _pipeline(1), _pipeline(2)
    try:
        assert isinstance(one.detector, EagerDetector) and not one.overlaps
        assert isinstance(two.detector, ThreadedDetector) and two.overlaps
        # an unreadable frame (None) in the middle comes out in its place, the others around it intact
        items = [(0, frames[0]), (1, frames[1]), ("bad", None), (2, frames[2]), (3, frames[3])]
        streamed = list(two.run_stream(items))
        assert [k for k, _ in streamed] == [0, 1, "bad", 2, 3]
        assert streamed[2][1] is None
        for (key, result), frame in zip([s for s in streamed if s[1] is not None], frames):
            expected = one.run(frame)
            assert [l.text for l in result.lines] == [l.text for l in expected.lines]
            assert result.lines, f"sample {key} read nothing"
    finally:
        one.close()
        two.close()


def test_a_failing_detection_is_raised_where_its_frame_is_finished(frames):
    pipe = _pipeline(2)
    try:
        with pytest.raises(ValueError):
            list(pipe.run_stream([(0, frames[0]), (1, frames[0][:, :, :1].copy())]))   # one channel: refused
    finally:
        pipe.close()


def test_auto_keeps_two_in_flight_from_four_physical_cores(monkeypatch):
    import daemon.backends.onnxruntime.threads as threads

    monkeypatch.setattr(threads, "physical_cores", lambda *a, **k: 2)
    assert cpu_frames_in_flight(0) == 1
    assert cpu_frames_in_flight(2) == 2        # a two-core box where the bench shows it pays
    monkeypatch.setattr(threads, "physical_cores", lambda *a, **k: 4)
    assert cpu_frames_in_flight(0) == 2
    assert cpu_frames_in_flight(1) == 1


def test_once_over_a_folder_prints_one_line_per_image_in_order(tmp_path):
    for p in SAMPLES[:3]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "label_00100b_broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("not an image")
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "once", "--json", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    lines = [json.loads(l) for l in done.stdout.splitlines()]
    assert [Path(l["image"]).name for l in lines] == sorted([p.name for p in SAMPLES[:3]] + ["label_00100b_broken.png"])
    assert "not an image format" in lines[1]["error"] and "BytesIO" not in lines[1]["error"]
    assert all(l["texts"] for i, l in enumerate(lines) if i != 1)
    assert done.returncode == 1                  # an unreadable image is a failure, the others still ran


def test_cpu_rec_batch_is_4_on_two_threads_then_the_engines_batch():
    o = config.from_dict({}).ocr                  # rec_batch 8, tail 2, cpu_rec_batch 0
    assert [cpu_rec_batch(o, t) for t in (1, 2, 3, 4, 16)] == [4, 4, 8, 8, 8]
    assert cpu_rec_batch(replace(o, cpu_rec_batch=6), 2) == 6             # set: taken as it is
    assert cpu_rec_batch(replace(o, rec_batch=3), 2) == 3                 # never above a smaller rec_batch
    assert cpu_rec_batch(replace(o, rec_batch=8, rec_tail_batch=5), 2) == 6   # always above the tail batch


def test_the_cpu_batch_reads_what_the_engines_batch_reads(frames):
    small = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime", "ocr": {"threads": 2}}))
    large = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime",
                                                      "ocr": {"threads": 2, "cpu_rec_batch": 8}}))
    try:
        assert (small.cfg.rec_batch, large.cfg.rec_batch) == (4, 8)
        assert small.rec.inputs[0].shape[0] == 4 and small.cls.inputs[0].shape[0] == 4
        for frame in frames:
            assert [l.text for l in small.run(frame).lines] == [l.text for l in large.run(frame).lines]
    finally:
        small.close()
        large.close()
