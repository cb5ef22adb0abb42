"""A consensus camera in the running service (issue 11, 4), with the real models, a real video file and a real
outbox, in process and as the daemon process with a real Mosquitto: each label that passes the view is stored
once, voted from several frames, its text and its code in one message, and a label still in view when the
service stops is published by the drain. Bounded by deadlines; no timing assertions (leave_after_s and
max_wait_s are far beyond the test, so labels finish by frames alone)."""
import json
import signal
from datetime import datetime

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from daemon import config
from daemon.publish.outbox import Outbox
from daemon.service import Service
from daemon.samples.codes import paste_code
from publish_support import VALIDATOR
from broker import Recorder, free_port, wait_until
from service_support import FONT, Daemon, work_loop, write_config

FIRST, SECOND = "SF7300000000", "EMS726938093443"
LABEL_FRAMES = 6


def _frame(text: str, x: int, y: int) -> np.ndarray:
    im = Image.new("RGB", (640, 256), "white")
    ImageDraw.Draw(im).text((x, y), text, font=ImageFont.truetype(FONT, 36), fill=(20, 20, 20))
    return cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2BGR)


def _video(path) -> int:
    """Label one moving right along the top row, then label two along the bottom row, played at 2 fps (the file
    source keeps its rate: the OCR keeps up, and a frame it misses is counted as dropped); the frame count."""
    frames = [_frame(FIRST, 20 + 12 * i, 30) for i in range(LABEL_FRAMES)]
    frames += [_frame(SECOND, 20 + 12 * i, 160) for i in range(LABEL_FRAMES)]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 2.0, (640, 256))
    for f in frames:
        out.write(f)
    out.release()
    return len(frames)


def _config(tmp_path, clip, **camera) -> dict:
    return {
        "device_id": "dock", "backend": "onnxruntime",
        "ocr": {"det_input_size": [256, 640], "use_angle_classifier": False, "threads": 1},
        "cameras": [{"name": "belt", "kind": "file", "uri": str(clip), "watchdog_s": 0, "codes": [],
                     "publish_mode": "consensus", "leave_after_frames": 3, "leave_after_s": 600,
                     "max_wait_s": 600, **camera}],
        "mqtt": {"enabled": False}, "metrics": {"enabled": False},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
    }


def _first_label_stored_second_in_view(service, total) -> None:
    # Every frame of the file taken (or overwritten in the hub before the loop took it).
    assert wait_until(lambda: service.snapshot()["cameras"]["belt"]["frames"]
                 + service.hub.dropped.get("belt", 0) >= total, 120)
    # The first label left view (three frames without it): stored once; the second is still voted on.
    assert wait_until(lambda: service.outbox.depth()[0] >= 1, 30)
    assert service.outbox.depth()[0] == 1 and service.lanes["belt"].pending == 1


def _stored(cfg) -> list[dict]:
    outbox = Outbox(cfg.outbox)
    try:
        docs = [json.loads(r.payload) for r in outbox.pending(10)]
    finally:
        outbox.close()
    for doc in docs:
        VALIDATOR.validate(doc)
    return docs


def _texts(doc) -> str:
    return "".join(t["text"] for t in doc["texts"]).replace(" ", "")


def test_consensus_camera_stores_one_reading_per_label_and_the_drain_publishes_the_one_in_view(tmp_path):
    clip = tmp_path / "belt.avi"
    total = _video(clip)
    cfg = config.from_dict(_config(tmp_path, clip))
    service = Service(cfg, str(tmp_path / "unused.yaml"))
    service.start()
    with work_loop(service):
        _first_label_stored_second_in_view(service, total)
    docs = _stored(cfg)
    assert [_texts(d) for d in docs] == [FIRST, SECOND]
    assert all(d["frames"] > 1 for d in docs), [d["frames"] for d in docs]
    assert [d["seq"] for d in docs] == [1, 2] and docs[0]["source"]["kind"] == "file"


def test_a_label_in_view_at_sighup_is_published_before_the_new_config_applies(tmp_path):
    clip = tmp_path / "belt.avi"
    total = _video(clip)
    path = write_config(tmp_path / "config.yaml", _config(tmp_path, clip))
    cfg = config.load(path)
    service = Service(cfg, str(path))
    service.start()
    with work_loop(service):
        _first_label_stored_second_in_view(service, total)
        write_config(path, _config(tmp_path, clip, min_confidence=0.4))   # a filter change: the camera keeps running
        service.request_reload()   # what SIGHUP sets
        assert wait_until(lambda: service.outbox.depth()[0] == 2, 30)
        assert service.lanes["belt"].pending == 0 and service.cfg.cameras[0].min_confidence == 0.4
        lane = service.lanes["belt"]
    docs = _stored(cfg)
    assert [_texts(d) for d in docs] == [FIRST, SECOND] and all(d["frames"] > 1 for d in docs)
    # The renewed lane knows what its camera published before the reload: the same label, seen again within
    # dedup_window_s, is not published again (found from outside: it was, a second after a reload).
    from daemon.ocr.results import TextLine
    from daemon.readings.results_filter import DUPLICATE

    box = ((0.0, 0.0), (10.0, 0.0), (10.0, 5.0), (0.0, 5.0))
    again = lane.filter.decide([TextLine(t["text"], 0.99, box) for t in docs[1]["texts"]],
                               datetime.fromisoformat(docs[1]["captured_at"]).timestamp() + 1.0)
    assert not again.publish and again.rejected[DUPLICATE] == 1


# A label on a belt: its number, a Code 128 of it below, and a town far below that (three line heights: the layout
# alone would make two labels of it; its outline makes one).
S10, TOWN = "EE123456785CN", "PARIS 75001"
WAYBILL, CITY = "SF7300000000", "LYON 69002"
BELT_BGR = (70, 95, 120)


def _belt_frame(key: str, town: str, x: int, with_code: bool) -> np.ndarray:
    frame = np.zeros((320, 640, 3), np.uint8)
    frame[:] = BELT_BGR
    label = Image.new("RGB", (400, 210), (236, 236, 232))
    draw = ImageDraw.Draw(label)
    draw.text((20, 10), key, font=ImageFont.truetype(FONT, 30), fill=(20, 20, 20))
    draw.text((20, 165), town, font=ImageFont.truetype(FONT, 28), fill=(20, 20, 20))
    patch = cv2.cvtColor(np.asarray(label), cv2.COLOR_RGB2BGR)
    if with_code:
        patch = paste_code(patch, key, 20, 55, "Code128", 2, height_px=90)
    frame[55:265, x:x + 400] = patch
    return frame


def _belt_video(path) -> int:
    """The S10 label with its code, then the waybill label without one, each crossing in six frames at 1 fps
    (slow enough that a loaded test machine's OCR takes every frame: the first label must see three frames
    of the second to leave view)."""
    frames = [_belt_frame(S10, TOWN, 20 + 16 * i, True) for i in range(LABEL_FRAMES)]
    frames += [_belt_frame(WAYBILL, CITY, 20 + 16 * i, False) for i in range(LABEL_FRAMES)]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 1.0, (640, 320))
    for f in frames:
        out.write(f)
    out.release()
    return len(frames)


def test_label_with_code_and_text_is_one_message_confirmed_by_code_and_the_one_in_view_at_sigterm_is_drained(
        tmp_path, broker):
    clip = tmp_path / "belt.avi"
    total = _belt_video(clip)
    cfg = _config(tmp_path, clip, codes=["Code128"])
    cfg["ocr"]["det_input_size"] = [320, 640]
    cfg["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 5, "reconnect_min_s": 0.2,
                   "reconnect_max_s": 1.0, "stats_interval_s": 0.5}
    cfg["metrics"] = {"port": free_port()}
    cfg["service"] = {"drain_timeout_s": 5.0}
    path = write_config(tmp_path / "config.yaml", cfg)
    rec = Recorder(broker.port, topic="ocr/dock/#", client_id="rec-consensus")
    rec.wait_subscribed()
    d = Daemon(path, tmp_path / "daemon.log").start()
    try:
        def frames_taken(m) -> bool:
            belt = m.json()["cameras"]["belt"]
            return belt["frames"] + belt["dropped"] >= total
        # Every frame taken; the first label left view (three frames without it) and is published, only once.
        assert wait_until(lambda: any(frames_taken(m) for m in rec.on_topic("ocr/dock/stats")), 120), d.log()
        assert wait_until(lambda: len(rec.results()) >= 1, 30), d.log()
        assert len(rec.results()) == 1
        d.signal(signal.SIGTERM)
        assert d.wait(30) == 0
        assert wait_until(lambda: len(rec.results()) == 2, 10), d.log()
    finally:
        d.close()
        rec.close()
    first, second = docs = [m.json() for m in rec.results()]
    for doc in docs:
        VALIDATOR.validate(doc)
    # One message per label, its number, its town (the detector may split it at the space) and its code together.
    key, *rest = first["texts"]
    assert key["text"] == S10 and key.get("confirmed_by") == "code"
    assert "".join(t["text"] for t in rest).replace(" ", "") == TOWN.replace(" ", "")
    assert [(c["format"], c["text"]) for c in first["codes"]] == [("Code128", S10)]
    assert _texts(second) == WAYBILL + CITY.replace(" ", "")
    assert not second.get("codes") and all(d["frames"] > 1 for d in docs), [d["frames"] for d in docs]
    assert "1 label(s) still in view published (stopping)" in d.log()
