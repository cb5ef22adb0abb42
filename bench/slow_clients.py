"""Slow and idle clients against the daemon's HTTP servers: how fast /healthz and the page answer while
N clients hold connections open idle, trickle one header line every few seconds, or send half a request head.

    .venv/bin/python bench/slow_clients.py [--n 6 64 70 300] [--modes idle trickle half] [--seconds 12]
                                           [--servers metrics page] [--label TEXT] [--json FILE]

Starts the real servers in this process with their default deadlines and limits: MetricsServer (probed on
/healthz) and the page's WebServer (the Flask app on a stand-in feed, probed on /). Per server, mode and N, an
attacker process opens the N connections; then a probe fetches the path on a fresh connection every 0.25 s for
--seconds and gives each fetch 5 s (more counts as a failure, as does any status but 200). Like a persistent
attacker, the attacker reopens every connection the server closed at its next tick (every 0.5 s), and a trickler
sends its next header line every --trickle-s seconds (5 s: issue 28's six clients).

The attackers and the probe run in processes of their own, as they would in the field: neither shares the servers'
interpreter lock (a probe in the servers' process waits for that lock between its connect and its send, and a
burst of the attacker's connections from the same address may evict it in that window). The daemon's own OCR
threads are not running here.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROBE_TIMEOUT_S = 5.0
PROBE_EVERY_S = 0.25
ATTACKER_TICK_S = 0.5
MODES = ("idle", "trickle", "half")


# ---------------------------------------------------------------- the attacker (its own process)

def _open(host: str, port: int, mode: str):
    try:
        s = socket.create_connection((host, port), timeout=0.5)
    except OSError:
        return None
    s.setblocking(False)
    try:
        if mode == "trickle":
            s.send(b"GET / HTTP/1.1\r\n")
        elif mode == "half":
            s.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: half-a-req")   # the head never ends
    except OSError:
        s.close()
        return None
    return s


def _alive(s: socket.socket) -> bool:
    try:
        s.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False   # the server hung up, or answered (408, 431, ...): this connection is over


def attack(host: str, port: int, mode: str, n: int, trickle_s: float, ready) -> None:
    """N connections of one kind, each reopened at the next tick once the server closed it."""
    slots: list = [None] * n
    next_line = [0.0] * n
    first = True
    while True:
        now = time.monotonic()
        for i in range(n):
            s = slots[i]
            if s is not None and not _alive(s):
                s.close()
                s = slots[i] = None
            if s is None:
                slots[i] = _open(host, port, mode)
                next_line[i] = now + trickle_s
            elif mode == "trickle" and now >= next_line[i]:
                try:
                    s.send(b"X-Trickle-%d: x\r\n" % i)
                except OSError:
                    s.close()
                    slots[i] = None
                next_line[i] = now + trickle_s
        if first:
            ready.set()
            first = False
        time.sleep(ATTACKER_TICK_S)


# ---------------------------------------------------------------- the probe (its own process)

def probe(host: str, port: int, path: str, seconds: float) -> list:
    """Latencies in ms of the fetches that answered 200; for each that failed, why (an exception's name)."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(host, port, timeout=PROBE_TIMEOUT_S)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            out.append((time.perf_counter() - t0) * 1000.0 if resp.status == 200 else f"HTTP {resp.status}")
        except (OSError, http.client.HTTPException) as exc:
            out.append(type(exc).__name__)
        time.sleep(max(0.0, PROBE_EVERY_S - (time.perf_counter() - t0)))
    return out


def summary(samples: list) -> dict:
    ok = sorted(x for x in samples if isinstance(x, float))
    why: dict = {}
    for x in samples:
        if not isinstance(x, float):
            why[x] = why.get(x, 0) + 1
    row = {"probes": len(samples), "failures": len(samples) - len(ok), "failed_how": why}
    if ok:
        row.update(median_ms=round(statistics.median(ok), 2),
                   p95_ms=round(ok[min(len(ok) - 1, int(round(0.95 * (len(ok) - 1))))], 2),
                   max_ms=round(ok[-1], 2))
    else:
        row.update(median_ms=None, p95_ms=None, max_ms=None)
    return row


# ---------------------------------------------------------------- the servers

def start_metrics():
    from daemon.metrics import Metrics, MetricsServer

    server = MetricsServer(Metrics(lambda: {}), lambda: (True, {}), "127.0.0.1", 0).start()
    return server, "/healthz"


def start_page():
    from daemon.web.app import PageFeed, create_app
    from daemon.web.server import WebServer

    feed = PageFeed(state=lambda: {"cameras": {}}, latest=lambda camera: None, roi=lambda camera: (),
                    save=lambda camera: None, evidence_path=lambda msg_id, line: None, device="bench")
    return WebServer(create_app(feed), "127.0.0.1", 0, threads=4).start(), "/"


SERVERS = {"metrics": start_metrics, "page": start_page}


def run_case(server_kind: str, mode: str, n: int, seconds: float, trickle_s: float) -> dict:
    server, path = SERVERS[server_kind]()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    attacker = ctx.Process(target=attack, args=("127.0.0.1", server.port, mode, n, trickle_s, ready), daemon=True)
    try:
        attacker.start()
        ready.wait(60)
        time.sleep(1.0)   # the attacker's connections are in place
        with ctx.Pool(1) as pool:
            samples = pool.apply(probe, ("127.0.0.1", server.port, path, seconds))
    finally:
        attacker.terminate()
        attacker.join(10)
        server.stop()
    return {"server": server_kind, "path": path, "mode": mode, "n": n, **summary(samples)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def table(rows: list) -> str:
    head = "| server | probed | clients | N | probes | failures | median ms | p95 ms | max ms |"
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f = (lambda v: "-" if v is None else f"{v:.1f}")
        lines.append(f"| {r['server']} | {r['path']} | {r['mode']} | {r['n']} | {r['probes']} | {r['failures']} | "
                     f"{f(r['median_ms'])} | {f(r['p95_ms'])} | {f(r['max_ms'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[6, 64, 70, 300])
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--servers", nargs="+", choices=sorted(SERVERS), default=["metrics", "page"])
    p.add_argument("--seconds", type=float, default=12.0, help="probing time per case")
    p.add_argument("--trickle-s", type=float, default=5.0, help="a trickler's pause between header lines")
    p.add_argument("--label", default="", help="what ran (recorded in the JSON)")
    p.add_argument("--json", type=Path, help="write the rows and the machine here")
    a = p.parse_args(argv)
    rows = []
    for server_kind in a.servers:
        for mode in a.modes:
            for n in a.n:
                row = run_case(server_kind, mode, n, a.seconds, a.trickle_s)
                rows.append(row)
                print(f"{server_kind:8s} {mode:8s} N={n:<4d} probes={row['probes']:<3d} failures={row['failures']:<3d} "
                      f"median={row['median_ms']} p95={row['p95_ms']} max={row['max_ms']} {row['failed_how'] or ''}",
                      flush=True)
    print()
    print(table(rows))
    if a.json:
        meta = {"label": a.label, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "nproc": os.cpu_count(),
                "cpu": cpu_model(), "python": platform.python_version(), "seconds": a.seconds,
                "trickle_s": a.trickle_s, "probe_timeout_s": PROBE_TIMEOUT_S, "probe_every_s": PROBE_EVERY_S}
        a.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
