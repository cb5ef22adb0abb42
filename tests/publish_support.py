"""What the publish tests share: configs, a producer that writes real result messages, and the delivery check."""
from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import jsonschema
import pytest

from daemon.config import MqttConfig, OutboxConfig
from daemon.ocr.results import TextLine
from daemon.publish.outbox import Outbox
from daemon.publish.payload import result_message, result_topic

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "daemon/schema/ocr-result-4.json").read_text())


class _ResultValidator:
    """Validates an ocr-result message against the schema it names: ocr-result/4, or ocr-result/5 (a read cycle's
    result, a consensus label's with its status)."""

    def __init__(self):
        here = Path(__file__).resolve().parent.parent / "daemon/schema"
        self._by_id = {f"ocr-result/{v}": jsonschema.Draft202012Validator(
            json.loads((here / f"ocr-result-{v}.json").read_text())) for v in (4, 5)}

    def validate(self, doc: dict) -> None:
        assert doc.get("schema") in self._by_id, doc.get("schema")
        self._by_id[doc["schema"]].validate(doc)


VALIDATOR = _ResultValidator()
DEVICE = "dev"
PREFIX = "ocr"


def mqtt_cfg(port: int, **kw) -> MqttConfig:
    """Short timers so outages are noticed and healed within a test (keepalive below validate()'s floor of 5 s
    is fine here: the dataclass is built directly)."""
    base = MqttConfig(host="127.0.0.1", port=port, protocol="5", client_id="ocr-test-daemon", topic_prefix=PREFIX,
                      keepalive_s=5, reconnect_min_s=0.1, reconnect_max_s=0.5, max_inflight=20)
    return replace(base, **kw)


def outbox_cfg(tmp_path, **kw) -> OutboxConfig:
    return OutboxConfig(path=str(Path(tmp_path) / "outbox.sqlite3"), **kw)


_LINE = TextLine("SF1234567890123", 0.98, ((10.0, 20.0), (210.0, 20.0), (210.0, 52.0), (10.0, 52.0)))


def put_result(ob: Outbox, camera: str, text: Optional[str] = None) -> tuple[str, bool]:
    """One reading the way the pipeline stores it: seq, message, row. Returns (msg_id, stored)."""
    seq = ob.next_seq(camera)
    line = replace(_LINE, text=text or f"{camera}-{seq:06d}")
    msg_id, payload = result_message(device_id=DEVICE, camera=camera, seq=seq, captured_at=time.time(),
                                     lines=[line], latency_ms={"capture_to_publish": 1.5},
                                     engine={"backend": "onnxruntime", "precision": "fp32"})
    return msg_id, bool(ob.put(camera, result_topic(PREFIX, DEVICE, camera), msg_id, payload))


@dataclass
class Producer:
    """Writes n results round-robin over cameras from its own thread, pause_s apart, waking the publisher."""
    ob: Outbox
    publisher: object
    cameras: Sequence[str]
    n: int
    pause_s: float = 0.0
    produced: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Producer":
        self._thread.start()
        return self

    def _run(self) -> None:
        for i in range(self.n):
            msg_id, ok = put_result(self.ob, self.cameras[i % len(self.cameras)])
            assert ok
            self.produced.append(msg_id)
            self.publisher.wake()
            if self.pause_s:
                time.sleep(self.pause_s)

    def join(self, timeout_s: float = 60.0) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "producer stuck"


@dataclass
class Delivery:
    unique: dict[str, dict]            # id -> payload (first copy)
    duplicates: int                    # copies beyond the first
    per_camera_seq: dict[str, list[int]]


def check_delivery(received) -> Delivery:
    """Every result message valid against the schema; every copy of an id byte-identical; per camera, seq
    strictly increasing once duplicates are removed (first copy kept)."""
    unique: dict[str, dict] = {}
    raw: dict[str, bytes] = {}
    duplicates = 0
    per_camera: dict[str, list[int]] = defaultdict(list)
    for m in received:
        doc = json.loads(m.payload)
        VALIDATOR.validate(doc)
        assert m.topic == result_topic(PREFIX, doc["device"], doc["camera"])
        if doc["id"] in unique:
            assert raw[doc["id"]] == m.payload, f"duplicate {doc['id']} differs from its first copy"
            duplicates += 1
            continue
        unique[doc["id"]] = doc
        raw[doc["id"]] = m.payload
        per_camera[doc["camera"]].append(doc["seq"])
    for camera, seqs in per_camera.items():
        bad = [(a, b) for a, b in zip(seqs, seqs[1:]) if b <= a]
        assert not bad, f"camera {camera} out of order: {bad[:5]}"
    return Delivery(unique, duplicates, dict(per_camera))


class FakeClock:
    """A clock the test moves by hand (outbox TTL and wall-clock steps)."""

    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def cleanup():
    """Publishers and outboxes a test registers are stopped and closed after it, and functions it registers
    called, newest first."""
    from daemon.publish.mqtt_client import Publisher

    items = []
    yield items.append
    for item in reversed(items):
        if isinstance(item, Publisher):
            item.stop(0)
        elif callable(item):
            item()
        else:
            item.close()
