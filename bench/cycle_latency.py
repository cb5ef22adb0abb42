"""Read cycles, trigger to result: how long a PLC waits, per protocol, and how long a recipe change takes.

A real daemon process (`python -m daemon run`, the real ONNX Runtime models on this CPU) with one triggered camera
(the bundled sample images as a live source at --fps, `cycle_frames` 1 by default), MQTT to a Mosquitto this script
starts, the page's HTTP server and the Modbus TCP server on loopback. This process plays the PLC and the
subscriber. For each protocol in turn, --triggers cycles, one at a time (the next trigger once the last result was
received):

- mqtt:   publish {"trigger_id"} to {prefix}/{device}/{camera}/trigger (QoS 1);
- http:   POST /api/cameras/<camera>/trigger with X-OCR-Page: 1;
- modbus: write trigger_id to the holding registers, set the trigger coil, clear it after trigger_ack (pymodbus's
          client), then poll result_valid every 2 ms as a PLC's scan would, and acknowledge the result;
- opcua:  call the camera's StartSingleJob (asyncua's client, Basic256Sha256 SignAndEncrypt with a user), wait for
          its ResultReady event, and acknowledge it (AcknowledgeResult).

Per cycle: trigger -> stored is the daemon's own `latency_ms.trigger_to_outbox` (from the trigger's arrival in
the daemon to the result durable in the outbox); trigger -> received is this process's clock from just before
sending the trigger to the result message arriving at the MQTT subscriber (Modbus: to result_valid read back as
well; OPC UA: to the ResultReady event); OCR is the pipeline's stages of the cycle's frame (det with its pre-processing, det_post, crop, cls, rec
with its CTC decoding); outside OCR = trigger -> stored - OCR: the wait for the first frame captured after the
trigger (up to 1 / fps: "frame wait" = trigger -> stored - the payload's capture_to_outbox), the loop's turn,
the tracker, verification and the outbox write; codes are read beside the OCR on their own thread (their ms is
shown apart, not added). What inside the OCR stages is not
the models (pre- and post-processing) is bench/cpu_ceiling.py's subject (bench/RESULTS.md sections 30 and 32).

Recipe changes: --recipes selections per protocol, alternating two recipes: selection -> answer (MQTT: the answer
topic; HTTP: the response; Modbus: the recipe input register read back; OPC UA: SelectRecipe's return) and whether the next cycle's result names
the recipe just selected.

    .venv/bin/python bench/cycle_latency.py [--triggers 40] [--recipes 10] [--protocols mqtt,http,modbus,opcua]
                                            [--fps 30] [--cycle-frames 1] [--json FILE]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cpu_ceiling import Mosquitto, find_mosquitto   # noqa: E402

DEVICE, CAMERA, PREFIX = "bench", "station", "ocr"
OPCUA_USER, OPCUA_PASSWORD_ENV, OPCUA_PASSWORD = "ocr", "BENCH_OPCUA_PASSWORD", "bench-opcua-password"
CLIENT_URI = "urn:bench:plc"
OCR_STAGES = ("det", "det_post", "crop", "cls", "rec")
RECIPES = ({"name": "lot-a", "expect_regex": ".+"}, {"name": "lot-b", "expect_regex": ".+"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    return {"n": len(values), "p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1),
            "p99": round(float(np.percentile(a, 99)), 1), "max": round(float(a.max()), 1)}


class Subscriber:
    """The MQTT side of the PLC: every result on the camera's text topic, and the command answers, with the time
    each arrived (time.perf_counter)."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.results: "queue.Queue[tuple[float, dict]]" = queue.Queue()
        self.answers: "queue.Queue[tuple[float, str, dict]]" = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-plc")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe([(f"{PREFIX}/{DEVICE}/{CAMERA}/text", 1),
                                                             (f"{PREFIX}/{DEVICE}/{CAMERA}/+/answer", 1)])
        self.client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, msg) -> None:
        now = time.perf_counter()
        doc = json.loads(msg.payload)
        if msg.topic.endswith("/answer"):
            self.answers.put((now, msg.topic, doc))
        else:
            self.results.put((now, doc))

    def publish(self, suffix: str, doc: dict) -> None:
        self.client.publish(f"{PREFIX}/{DEVICE}/{CAMERA}/{suffix}", json.dumps(doc), qos=1)

    def result_for(self, trigger_id: str, timeout_s: float = 120.0) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            at, doc = self.results.get(timeout=max(0.01, deadline - time.monotonic()))
            if doc.get("trigger_id") == trigger_id:
                return at, doc

    def answer_on(self, suffix: str, timeout_s: float = 30.0) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            at, topic, doc = self.answers.get(timeout=max(0.01, deadline - time.monotonic()))
            if topic.endswith(f"/{suffix}/answer"):
                return at, doc

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Plc:
    """pymodbus's client on the camera's block (base address 0)."""

    def __init__(self, port: int):
        from pymodbus.client import ModbusTcpClient

        from daemon.publish.sinks import modbus as mb
        self.mb = mb
        self.client = ModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=1)
        deadline = time.monotonic() + 60
        while not self.client.connect():
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon's Modbus server did not answer")
            time.sleep(0.2)

    def di(self) -> list[bool]:
        return list(self.client.read_discrete_inputs(0, count=self.mb.DISCRETE_INPUTS, device_id=1).bits)

    def ir(self) -> list[int]:
        return list(self.client.read_input_registers(0, count=self.mb.INPUT_REGISTERS, device_id=1).registers)

    def wait(self, offset: int, value: bool, timeout_s: float = 120.0, poll_s: float = 0.002) -> float:
        deadline = time.monotonic() + timeout_s
        while self.di()[offset] != value:
            if time.monotonic() > deadline:
                raise TimeoutError(f"discrete input {offset} did not become {value}")
            time.sleep(poll_s)
        return time.perf_counter()

    def acknowledge_all(self) -> None:
        """Every result shown is acknowledged (results of other protocols' cycles queue here too)."""
        mb = self.mb
        while self.di()[mb.DI_RESULT_VALID]:
            self.client.write_coil(mb.COIL_RESULT_ACK, True, device_id=1)
            self.wait(mb.DI_RESULT_VALID, False, 10)
            self.client.write_coil(mb.COIL_RESULT_ACK, False, device_id=1)
            time.sleep(0.05)   # the next one, if any, is shown once result_ack is back to 0

    def trigger(self, number: int) -> None:
        mb = self.mb
        self.client.write_registers(mb.HR_TRIGGER_ID, mb.uint32_registers(number), device_id=1)
        self.client.write_coil(mb.COIL_TRIGGER, True, device_id=1)

    def close(self) -> None:
        self.client.close()


class OpcUaPlc:
    """asyncua's client on its own event loop thread, calling the camera's methods and timing ResultReady."""

    def __init__(self, port: int, work: Path):
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.events: "queue.Queue[tuple[float, int]]" = queue.Queue()
        self._run(self._connect(port, work))

    def _run(self, coro, timeout_s: float = 120.0):
        import asyncio
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    async def _connect(self, port: int, work: Path) -> None:
        import asyncio

        from asyncua import Client
        from asyncua.crypto.cert_gen import setup_self_signed_certificate
        from cryptography.x509.oid import ExtendedKeyUsageOID

        key, cert = work / "plc-key.pem", work / "plc-cert.der"
        await setup_self_signed_certificate(key, cert, CLIENT_URI, socket.gethostname(),
                                            [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "bench-plc"})
        deadline = time.monotonic() + 60
        while True:   # the server starts on its own thread (and makes its certificate on a first start)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)
        self.client = Client(f"opc.tcp://127.0.0.1:{port}/ocr-daemon/", timeout=30)
        self.client.application_uri = CLIENT_URI
        await self.client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
        self.client.set_user(OPCUA_USER)
        self.client.set_password(OPCUA_PASSWORD)
        await self.client.connect()
        idx = await self.client.get_namespace_index("urn:ocr-daemon")
        self.idx = idx
        self.cam = await self.client.nodes.objects.get_child([f"{idx}:OCR", f"{idx}:Cameras", f"{idx}:{CAMERA}"])
        events = self.events

        class Handler:
            def event_notification(self, event):
                fields = event.get_event_props_as_fields_dict()
                rid = next((v.Value for k, v in fields.items() if str(k).endswith("ResultId")), None)
                if rid is not None:
                    events.put((time.perf_counter(), int(rid)))
        self.sub = await self.client.create_subscription(10, Handler())
        etype = await self.client.nodes.base_event_type.get_child(f"{idx}:ResultReadyEventType")
        await self.sub.subscribe_events(self.cam, etype)

    def call(self, method: str, *args):
        return self._run(self.cam.call_method(f"{self.idx}:{method}", *args))

    def wait_event(self, result_id: int, timeout_s: float = 120.0) -> float:
        deadline = time.monotonic() + timeout_s
        while True:
            at, rid = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if rid == result_id:
                return at

    def close(self) -> None:
        try:
            self._run(self.client.disconnect(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def http_post(port: int, path: str, doc: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST", data=json.dumps(doc).encode(),
                                 headers={"X-OCR-Page": "1", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def start_daemon(work: Path, args, mqtt_port: int) -> tuple[subprocess.Popen, int, int, int]:
    web_port, modbus_port, opcua_port = _free_port(), _free_port(), _free_port()
    cfg = {"device_id": DEVICE, "backend": "onnxruntime", "ocr": {"threads": args.threads},
           "cameras": [{"name": CAMERA, "kind": "sample", "max_fps": args.fps, "mode": "triggered",
                        **({"codes": []} if args.no_codes else {}),
                        "cycle_frames": args.cycle_frames, "cycle_window_ms": 10000, "recipe": RECIPES[0]["name"]}],
           "recipes": list(RECIPES),
           "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "topic_prefix": PREFIX},
           "web": {"enabled": True, "host": "127.0.0.1", "port": web_port},
           "modbus": {"enabled": True, "port": modbus_port},
           "opcua": {"enabled": "opcua" in args.protocols, "host": "127.0.0.1", "port": opcua_port,
                     "username": OPCUA_USER, "password_env": OPCUA_PASSWORD_ENV,
                     "cert_file": str(work / "opcua" / "cert.der"), "key_file": str(work / "opcua" / "key.pem")},
           "metrics": {"enabled": False},
           "evidence": {"dir": str(work / "evidence")},
           "outbox": {"path": str(work / "outbox.sqlite3")}}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = open(work / "daemon.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "run", "--config", str(path)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, OPCUA_PASSWORD_ENV: OPCUA_PASSWORD})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited: {(work / 'daemon.log').read_text()[-2000:]}")
        try:   # the page answers once the daemon has started; the warm-up cycles wait for the camera
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/api/state", timeout=2):
                break
        except OSError:
            time.sleep(0.3)
    return proc, web_port, modbus_port, opcua_port


def one_cycle(proto: str, i: int, sub: Subscriber, web_port: int, plc: Plc, opc=None) -> dict:
    trigger_id = str(100000 + i) if proto == "modbus" else f"{proto}-{i}"
    extra: dict = {}
    t0 = time.perf_counter()
    if proto == "mqtt":
        sub.publish("trigger", {"trigger_id": trigger_id})
    elif proto == "http":
        code, answer = http_post(web_port, f"/api/cameras/{CAMERA}/trigger", {"trigger_id": trigger_id})
        if code != 202:
            raise RuntimeError(f"HTTP trigger answered {code}: {answer}")
    elif proto == "opcua":
        job = opc.call("StartSingleJob", trigger_id, "", "")
        if job != trigger_id:
            raise RuntimeError(f"StartSingleJob answered {job!r}")
    else:
        plc.trigger(int(trigger_id))
        plc.wait(plc.mb.DI_TRIGGER_ACK, True, 30)
        plc.client.write_coil(plc.mb.COIL_TRIGGER, False, device_id=1)
        valid_at = plc.wait(plc.mb.DI_RESULT_VALID, True)
        extra["to_result_valid_ms"] = (valid_at - t0) * 1000.0
    received_at, doc = sub.result_for(trigger_id)
    if proto == "modbus":
        plc.acknowledge_all()
    elif proto == "opcua":
        extra["to_result_ready_ms"] = (opc.wait_event(doc["result_id"]) - t0) * 1000.0
        opc.call("AcknowledgeResult", ua_uint64(doc["result_id"]))
    lat = doc["latency_ms"]
    ocr_ms = sum(float(lat.get(k, 0.0)) for k in OCR_STAGES)
    stored = float(lat["trigger_to_outbox"])
    return {"protocol": proto, "trigger_id": trigger_id, "status": doc["status"], "recipe": doc.get("recipe"),
            "codes_ms": float(lat.get("codes", 0.0)), "to_stored_ms": stored,
            "frame_wait_ms": max(0.0, stored - float(lat.get("capture_to_outbox", stored))),
            "to_received_ms": (received_at - t0) * 1000.0, "ocr_ms": ocr_ms, "outside_ocr_ms": stored - ocr_ms,
            **extra}


def ua_uint64(value: int):
    from asyncua import ua
    return ua.Variant(value, ua.VariantType.UInt64)


def recipe_change(proto: str, name: str, sub: Subscriber, web_port: int, plc: Plc, opc=None) -> float:
    t0 = time.perf_counter()
    if proto == "mqtt":
        sub.publish("recipe", {"recipe": name})
        at, answer = sub.answer_on("recipe")
        ok = answer.get("recipe") == name
    elif proto == "http":
        code, answer = http_post(web_port, f"/api/cameras/{CAMERA}/recipe", {"recipe": name})
        at, ok = time.perf_counter(), code == 200 and answer.get("recipe") == name
    elif proto == "opcua":
        answer = opc.call("SelectRecipe", name)
        at, ok = time.perf_counter(), answer == name
    else:
        number = 1 + [r["name"] for r in RECIPES].index(name)
        plc.client.write_register(plc.mb.HR_RECIPE, number, device_id=1)
        while plc.ir()[plc.mb.IR_RECIPE] != number:
            time.sleep(0.001)
        at, ok = time.perf_counter(), True
    if not ok:
        raise RuntimeError(f"{proto}: selecting {name} was not accepted")
    return (at - t0) * 1000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--triggers", type=int, default=40, help="cycles per protocol")
    ap.add_argument("--recipes", type=int, default=10, help="recipe selections per protocol")
    ap.add_argument("--protocols", default="mqtt,http,modbus,opcua")
    ap.add_argument("--fps", type=float, default=30.0, help="the sample camera's frame rate")
    ap.add_argument("--cycle-frames", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="ocr.threads (0: ONNX Runtime's default)")
    ap.add_argument("--warmup", type=int, default=3, help="cycles first, not counted")
    ap.add_argument("--no-codes", action="store_true", help="the camera reads no codes (cameras[].codes: [])")
    ap.add_argument("--mosquitto")
    ap.add_argument("--broker-delay", action="store_true", help="Mosquitto as installed (set_tcp_nodelay false)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    protocols = [p for p in args.protocols.split(",") if p]
    binary = find_mosquitto(args.mosquitto)
    if binary is None:
        print("mosquitto not found (Debian package mosquitto, or --mosquitto PATH)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="cycle-latency-"))
    # set_tcp_nodelay: without it Mosquitto held each small message about 40 ms (Nagle's algorithm against the
    # subscriber's delayed ACK), which a PLC waiting for its answer would see (bench/RESULTS.md section 34)
    broker = Mosquitto(binary, "" if args.broker_delay else "set_tcp_nodelay true\n")
    proc = sub = plc = opc = None
    cycles: list[dict] = []
    changes: dict[str, list] = {}
    applied: dict[str, list] = {}
    try:
        proc, web_port, modbus_port, opcua_port = start_daemon(work, args, broker.port)
        sub = Subscriber(broker.port)
        plc = Plc(modbus_port)
        if "opcua" in protocols:
            opc = OpcUaPlc(opcua_port, work)
        for i in range(args.warmup):
            one_cycle("http", -1 - i, sub, web_port, plc)
        plc.acknowledge_all()
        for proto in protocols:
            for i in range(args.triggers):
                cycles.append(one_cycle(proto, i, sub, web_port, plc, opc))
                print(f"{proto} {i}: stored {cycles[-1]['to_stored_ms']:.0f} ms, received "
                      f"{cycles[-1]['to_received_ms']:.0f} ms", file=sys.stderr, flush=True)
            plc.acknowledge_all()
        for proto in protocols:
            changes[proto], applied[proto] = [], []
            for k in range(args.recipes):
                name = RECIPES[(k + 1) % 2]["name"]
                changes[proto].append(recipe_change(proto, name, sub, web_port, plc, opc))
                result = one_cycle("http", 1000 * (1 + protocols.index(proto)) + k, sub, web_port, plc)
                applied[proto].append(result["recipe"] == name)   # the next cycle is judged by it
            plc.acknowledge_all()
    finally:
        for part in (sub, plc, opc):
            if part is not None:
                part.close()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
    shutil.rmtree(work, ignore_errors=True)
    report(args, protocols, cycles, changes, applied)
    return 0


def report(args, protocols, cycles, changes, applied) -> None:
    rows = {}
    print(f"\nread cycles on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; camera at "
          f"{args.fps:g} fps, cycle_frames {args.cycle_frames}; {args.triggers} cycles per protocol\n")
    print("| protocol | cycles | trigger → stored p50 / p95 / p99 ms | trigger → received p50 / p95 / p99 ms "
          "| OCR p50 ms | outside OCR p50 / p95 / p99 ms | of it frame wait p50 ms | codes (beside) p50 ms "
          "| Modbus result_valid / OPC UA ResultReady p50 / p95 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for proto in protocols:
        mine = [c for c in cycles if c["protocol"] == proto]
        row = {k: percentiles([c[k] for c in mine if k in c])
               for k in ("to_stored_ms", "to_received_ms", "ocr_ms", "outside_ocr_ms", "frame_wait_ms", "codes_ms",
                         "to_result_valid_ms", "to_result_ready_ms")}
        row["statuses"] = {s: sum(1 for c in mine if c["status"] == s) for s in {c["status"] for c in mine}}
        rows[proto] = row

        def trio(d):
            return f"{d['p50']:.0f} / {d['p95']:.0f} / {d['p99']:.0f}" if d.get("n") else "–"
        valid = row["to_result_valid_ms"] if row["to_result_valid_ms"].get("n") else row["to_result_ready_ms"]
        print(f"| {proto} | {len(mine)} | {trio(row['to_stored_ms'])} | {trio(row['to_received_ms'])} "
              f"| {row['ocr_ms'].get('p50', 0):.0f} | {trio(row['outside_ocr_ms'])} "
              f"| {row['frame_wait_ms'].get('p50', 0):.0f} | {row['codes_ms'].get('p50', 0):.0f} "
              f"| {(str(round(valid['p50'])) + ' / ' + str(round(valid['p95']))) if valid.get('n') else '–'} |")
    print("\n| recipe selected over | selections | selection → answer p50 / p95 / max ms "
          "| next cycle judged by it |")
    print("|---|---:|---:|---:|")
    change_rows = {}
    for proto, values in changes.items():
        if not values:      # --recipes 0
            continue
        d = percentiles(values)
        d["next_cycle_judged_by_it"] = sum(applied[proto])
        change_rows[proto] = d
        print(f"| {proto} | {d['n']} | {d['p50']:.1f} / {d['p95']:.1f} / {d['max']:.1f} "
              f"| {d['next_cycle_judged_by_it']} of {d['n']} |")
    if args.json:
        args.json.write_text(json.dumps({
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"processor": platform.processor(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "fps": args.fps, "cycle_frames": args.cycle_frames, "triggers": args.triggers,
            "protocols": rows, "recipe_change_ms": change_rows, "cycles": cycles}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
