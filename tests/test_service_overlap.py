"""The work loop's overlapped path: batch N+1 is submitted before batch N is finished.

A GPU detector returns from submit at once and hands its output over on collect. Here the real ONNX
Runtime detector is wrapped to behave that way (it runs at collect time), so the loop's ordering,
hand-off and flushing are exercised on the CPU with the real models and a real outbox.
"""
import json
import sqlite3
import threading
import time

from daemon import config
from daemon.service import Service
from service_support import render_label, small_ocr, waybill


class _DeferredDetector:
    """The detector model with the GPU model's submit_frames/collect surface: work happens on collect."""

    def __init__(self, model):
        self._model = model
        self.inputs, self.outputs = model.inputs, model.outputs
        self.submitted = 0
        self.max_in_flight = 0
        self._in_flight = 0

    def submit_frames(self, frames):
        self.submitted += 1
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        return list(frames)

    def collect(self, frames):
        self._in_flight -= 1
        return self._model.run_frames(frames)

    def run_frames(self, frames):
        return self.collect(self.submit_frames(frames))

    def close(self):
        self._model.close()


def test_overlapped_loop_stores_every_label_once_in_order(tmp_path):
    # two scanner folders: while one camera's frame is in flight the other's is waiting, so the loop
    # submits batch N+1 before it finishes batch N
    texts = {cam: [waybill(10 * k + i) for i in range(3)] for k, cam in enumerate(("left", "right"))}
    cameras = []
    for cam, labels in texts.items():
        folder = tmp_path / cam
        folder.mkdir()
        for i, text in enumerate(labels):
            render_label(folder / f"{i:02d}.png", text)
            time.sleep(0.01)     # distinct mtimes: a folder source goes oldest first
        cameras.append({"name": cam, "kind": "folder", "uri": str(folder), "dedup_window_s": 0, "watchdog_s": 0})
    outbox = tmp_path / "outbox.sqlite3"
    cfg = config.from_dict({
        "device_id": "dock", "backend": "onnxruntime", "ocr": small_ocr(), "cameras": cameras,
        "mqtt": {"enabled": False}, "outbox": {"path": str(outbox)}, "metrics": {"enabled": False},
    })
    service = Service(cfg, str(tmp_path / "unused.yaml"))
    service.start()
    det = _DeferredDetector(service.pipeline.det)
    service.pipeline.det = det
    assert service.pipeline.overlaps
    loop = threading.Thread(target=service.run)
    loop.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(
                len(list((tmp_path / cam / "done").glob("*.png"))) for cam in texts) < 6:
            time.sleep(0.2)
    finally:
        service._stop.set()
        loop.join(timeout=60)
    assert not loop.is_alive()
    with sqlite3.connect(outbox) as db:
        rows = [(cam, json.loads(p)) for cam, p in db.execute("SELECT camera, payload FROM outbox ORDER BY id")]
    for cam, labels in texts.items():
        read = ["".join(t["text"] for t in msg["texts"]).replace(" ", "") for c, msg in rows if c == cam]
        assert read == labels                     # each label once, in the order its scanner dropped them
    assert det.submitted == 6
    assert det.max_in_flight == 2                 # batch N+1 was submitted before batch N was finished
