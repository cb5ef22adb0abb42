"""The work loop's overlapped path: batch N+1 is submitted before batch N is finished.

A GPU detector with two buffer sets returns from submit at once and hands its output over on collect.
Here the real ONNX Runtime detector is wrapped to behave that way (it runs at collect time), so the
loop's ordering, hand-off and flushing are exercised on the CPU with the real models and a real outbox;
with one buffer set (gpu.streams 1) the loop must collect each batch before the next submit.
"""
import json
import sqlite3
import threading
import time

from daemon import config
from daemon.service import Service
from service_support import render_label, small_ocr, waybill


class _DeferredDetector:
    """The real detector behind the GPU detector's protocol: submit returns a ticket at once and the work
    happens on collect. ``slots`` buffer sets: a submit while all of them hold uncollected work fails,
    as the GPU's StreamPipeline does."""

    def __init__(self, model, slots: int):
        self._model = model
        self.overlaps = slots > 1
        self.slots = slots
        self.submitted = 0
        self.max_in_flight = 0
        self._in_flight = 0

    def submit(self, frames):
        if self._in_flight >= self.slots:
            raise RuntimeError("every buffer set still holds a submission: collect it first")
        self.submitted += 1
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        return list(frames)

    def collect(self, frames):
        self._in_flight -= 1
        return self._model.run_frames(frames)


def _two_scanners(tmp_path):
    texts = {cam: [waybill(10 * k + i) for i in range(3)] for k, cam in enumerate(("left", "right"))}
    cameras = []
    for cam, labels in texts.items():
        folder = tmp_path / cam
        folder.mkdir()
        for i, text in enumerate(labels):
            render_label(folder / f"{i:02d}.png", text)
            time.sleep(0.01)     # distinct mtimes: a folder source goes oldest first
        cameras.append({"name": cam, "kind": "folder", "uri": str(folder), "dedup_window_s": 0, "watchdog_s": 0})
    return texts, cameras


def _run_until_done(service, tmp_path, texts, det):
    if det is not None:
        service.pipeline.detector = det
    # Both scanners' first frames wait in the hub before the loop starts, so the loop's first two
    # takes find a frame each whatever the machine's speed: the overlap below does not hang on timing.
    deadline = time.monotonic() + 60
    while service.hub.pending() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.hub.pending() == 2
    loop = threading.Thread(target=service.run)
    loop.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(
                len(list((tmp_path / cam / "done").glob("*.png"))) for cam in texts) < 6:
            time.sleep(0.2)
    finally:
        service.request_stop()
        loop.join(timeout=60)
    assert not loop.is_alive()


def _stored(outbox):
    with sqlite3.connect(outbox) as db:
        return [(cam, json.loads(p)) for cam, p in db.execute("SELECT camera, payload FROM outbox ORDER BY id")]


def _service(tmp_path, cameras, streams, in_flight=1):
    outbox = tmp_path / "outbox.sqlite3"
    cfg = config.from_dict({
        "device_id": "dock", "backend": "onnxruntime", "ocr": {**small_ocr(), "frames_in_flight": in_flight},
        "cameras": cameras,
        "gpu": {"streams": streams},
        "mqtt": {"enabled": False}, "outbox": {"path": str(outbox)}, "metrics": {"enabled": False},
    })
    service = Service(cfg, str(tmp_path / "unused.yaml"))
    service.start()
    return service, outbox


def test_overlapped_loop_stores_every_label_once_in_order(tmp_path):
    # two scanner folders: while one camera's frame is in flight the other's is waiting, so the loop
    # submits batch N+1 before it finishes batch N
    texts, cameras = _two_scanners(tmp_path)
    service, outbox = _service(tmp_path, cameras, streams=2)
    det = _DeferredDetector(service.pipeline.det, slots=2)
    assert service.pipeline.detector.overlaps is False     # frames_in_flight 1: the CPU detector runs in submit
    _run_until_done(service, tmp_path, texts, det)
    rows = _stored(outbox)
    for cam, labels in texts.items():
        read = ["".join(t["text"] for t in msg["texts"]).replace(" ", "") for c, msg in rows if c == cam]
        assert read == labels                     # each label once, in the order its scanner dropped them
    assert det.submitted == 6
    assert det.max_in_flight == 2                 # batch N+1 was submitted before batch N was finished


def test_one_buffer_set_never_gets_a_second_submission(tmp_path):
    # gpu.streams: 1 -- a GPU detector with one buffer set does not overlap; the loop collects each
    # batch before the next (before, `overlaps` was "has submit_frames" and every other batch failed)
    texts, cameras = _two_scanners(tmp_path)
    service, outbox = _service(tmp_path, cameras, streams=1)
    det = _DeferredDetector(service.pipeline.det, slots=1)
    _run_until_done(service, tmp_path, texts, det)
    rows = _stored(outbox)
    for cam, labels in texts.items():
        assert ["".join(t["text"] for t in msg["texts"]).replace(" ", "") for c, msg in rows if c == cam] == labels
    assert det.submitted == 6 and det.max_in_flight == 1


def test_gpu_detector_overlaps_only_with_two_buffer_sets():
    from types import SimpleNamespace

    from daemon.backends.tensorrt.engine import GpuDetector

    assert GpuDetector(SimpleNamespace(_sets=[object()])).overlaps is False
    assert GpuDetector(SimpleNamespace(_sets=[object(), object()])).overlaps is True


def test_cpu_detector_on_its_own_thread_keeps_two_frames_in_flight(tmp_path):
    # ocr.frames_in_flight: 2 on the CPU: the real ONNX Runtime detector runs on its worker thread, the
    # loop submits frame N+1 before finishing frame N, and every label is still stored once, in order
    from daemon.ocr.detector import ThreadedDetector

    texts, cameras = _two_scanners(tmp_path)
    service, outbox = _service(tmp_path, cameras, streams=1, in_flight=2)
    det = service.pipeline.detector
    assert isinstance(det, ThreadedDetector) and det.overlaps
    counts = {"submitted": 0, "collected": 0, "max_in_flight": 0}
    submit, collect = det.submit, det.collect

    def counting_submit(frames):
        counts["submitted"] += 1
        counts["max_in_flight"] = max(counts["max_in_flight"], counts["submitted"] - counts["collected"])
        return submit(frames)

    def counting_collect(ticket):
        counts["collected"] += 1
        return collect(ticket)

    det.submit, det.collect = counting_submit, counting_collect
    _run_until_done(service, tmp_path, texts, None)
    rows = _stored(outbox)
    for cam, labels in texts.items():
        assert ["".join(t["text"] for t in msg["texts"]).replace(" ", "") for c, msg in rows if c == cam] == labels
    assert counts["submitted"] == counts["collected"] == 6
    assert counts["max_in_flight"] == 2
