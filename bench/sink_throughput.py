"""Delivery throughput per sink: N readings stored at once, then the time each sink takes to deliver all of them.

    .venv/bin/python bench/sink_throughput.py [--n 2000] [--sinks mqtt,sparkplug,homeassistant,opcua] [--alone]

A real Mosquitto (tests/broker.py) on loopback and the OPC UA server on loopback; all sinks drain one outbox file
at the same time (a dead or slow one holds back none of the others), or each alone with --alone. The readings are
stored before the sinks start; each sink is timed from the moment it is up (connected, or serving) until it owes
nothing. Prints one JSON line per sink.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from broker import Broker, free_port  # noqa: E402
from daemon.config import (CameraConfig, Config, HomeAssistantConfig, OpcUaConfig,  # noqa: E402
                           SparkplugConfig)
from daemon.publish.outbox import Outbox  # noqa: E402
from daemon.publish.sinks import build_sinks, stop_sinks  # noqa: E402
from publish_support import DEVICE, mqtt_cfg, outbox_cfg, put_result  # noqa: E402


def run(names: list[str], n: int, broker: Broker, tmp: Path) -> dict:
    os.environ["BENCH_OPCUA_PASSWORD"] = "bench-password"
    path = tmp / f"outbox-{'-'.join(names)}"
    path.mkdir()
    cfg = dataclasses.replace(
        Config(), device_id=DEVICE, outbox=outbox_cfg(path), mqtt=dataclasses.replace(mqtt_cfg(broker.port), enabled="mqtt" in names),
        sparkplug=SparkplugConfig(enabled="sparkplug" in names),
        homeassistant=HomeAssistantConfig(enabled="homeassistant" in names),
        opcua=OpcUaConfig(enabled="opcua" in names, host="127.0.0.1", port=free_port(),
                          cert_file=str(tmp / "cert.der"), key_file=str(tmp / "key.pem"),
                          password_env="BENCH_OPCUA_PASSWORD"),
        cameras=(CameraConfig(name="cam1", kind="sample"), CameraConfig(name="cam2", kind="sample")))
    ob = Outbox(cfg.outbox, sinks=names)
    for i in range(n):   # stored before any sink starts: each drains the same backlog
        put_result(ob, ("cam1", "cam2")[i % 2])
    sinks = build_sinks(cfg, ob)
    for s in sinks.values():
        s.start()
    up: dict[str, float] = {}
    done: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while len(done) < len(sinks) and time.monotonic() < deadline:
        now = time.monotonic()
        for name, s in sinks.items():
            if name not in up and s.up:
                up[name] = now   # timed from the moment it is connected (or serving)
            if name in up and name not in done and ob.depth(name)[0] == 0:
                done[name] = now - up[name]
        time.sleep(0.05)   # the poll itself takes the outbox lock: not too often
    stop_sinks(sinks, 0.0)
    ob.close()
    return {name: {"readings": n, "seconds": round(t, 2), "per_s": round(n / t, 1)} for name, t in done.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--sinks", default="mqtt,sparkplug,homeassistant,opcua")
    ap.add_argument("--alone", action="store_true", help="each sink on its own, not all at once")
    a = ap.parse_args()
    names = a.sinks.split(",")
    broker = Broker()
    broker.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            groups = [[n] for n in names] if a.alone else [names]
            for i, group in enumerate(groups):
                sub = Path(tmp) / str(i)
                sub.mkdir()
                for name, r in run(group, a.n, broker, sub).items():
                    print(json.dumps({"sink": name, "together_with": [g for g in group if g != name], **r}))
    finally:
        broker.close()


if __name__ == "__main__":
    main()
