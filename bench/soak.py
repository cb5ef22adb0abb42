#!/usr/bin/env python3
"""Soak test (not in CI): the daemon for N minutes against a real Mosquitto, with periodic broker and daemon kills.

A producer renders one label with a unique waybill number into an image folder every 1/rate seconds (a
scanner); the daemon reads the folder and publishes; a persistent-session subscriber records every result.
Every --broker-kill-s the broker is SIGKILLed (and restarted after --broker-down-s); every --daemon-kill-s the
daemon is SIGKILLed and restarted at once. At the end the producer stops, the daemon gets time to drain,
and the script prints:

    produced   labels dropped into the folder
    received   distinct labels that arrived (by reading, spaces ignored)
    pending    labels not yet delivered but safe on disk: image files still in the folder, outbox rows left,
               dead letters
    lost       produced - received - misread - pending (a misread label arrived, under another text)
    duplicated messages beyond the first per label, and how many of those carried a different id
               (a duplicate under a different id would be a bug; same-id duplicates are at-least-once)
    misread    labels that arrived with text other than the one rendered (OCR, not transport)

The broker autosaves its persistence every second, so a broker SIGKILL loses at most what it acknowledged
in the last second (the broker's loss, reported in its log, not the daemon's).

Two harsher episodes, each every N seconds when asked for:
    --disk-full-s    the outbox lives on its own small tmpfs (needs root to mount); the episode fills it to
                     ENOSPC for --disk-full-hold-s, then frees it: the daemon must stay up, keep the folder's
                     files, and resume by itself
    --corrupt-s      the daemon is SIGKILLed, one page in the middle of the outbox file is overwritten with
                     garbage, the daemon restarts: it must set the file aside and start fresh with what can
                     still be read (rows on the destroyed page are the damage's, counted in `lost`)
Peak RSS, threads and open fds of the daemon process are sampled every few seconds.

    python bench/soak.py --minutes 60 --disk-full-s 600 --corrupt-s 900
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sqlite3
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from broker import Broker, Recorder, free_port, wait_until  # noqa: E402
from service_support import Daemon, render_label, small_ocr, waybill, write_config  # noqa: E402


def reading(msg: dict) -> str:
    return "".join(t["text"] for t in msg["texts"]).replace(" ", "")


def process_usage(pid: int) -> dict | None:
    """RSS (MiB), threads and open fds of a live process, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024.0, "threads": int(fields["Threads"]), "fds": fds}


def mount_small_fs(path: Path, size_mib: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)],
                          capture_output=True, text=True)
    return done.returncode == 0


def fill(path: Path) -> Path:
    """Writes a filler file until the file system is full (unbuffered: nothing is left to flush at close)."""
    filler = path / "filler.bin"
    block = b"\0" * (1 << 16)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError:
                break
    finally:
        os.close(fd)
    return filler


def damage_middle_page(db_path: Path, rng: random.Random, page_size: int = 4096) -> int:
    """Overwrites one page in the middle of the SQLite file (never page 1, the header); returns its number."""
    pages = db_path.stat().st_size // page_size
    if pages < 3:
        return 0
    page = rng.randrange(2, pages)
    with open(db_path, "r+b") as f:
        f.seek(page * page_size)
        f.write(bytes(rng.randrange(256) for _ in range(page_size)))
    return page


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=0.5,
                    help="labels per second dropped into the folder; keep it below what the box OCRs")
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = all cores)")
    ap.add_argument("--broker-kill-s", type=float, default=90.0)
    ap.add_argument("--broker-down-s", type=float, default=10.0)
    ap.add_argument("--daemon-kill-s", type=float, default=75.0)
    ap.add_argument("--drain-s", type=float, default=300.0, help="time allowed at the end to deliver the rest")
    ap.add_argument("--disk-full-s", type=float, default=0.0, help="a disk-full episode every N s (0 = none)")
    ap.add_argument("--disk-full-hold-s", type=float, default=20.0)
    ap.add_argument("--corrupt-s", type=float, default=0.0, help="a corrupt-outbox episode every N s (0 = none)")
    ap.add_argument("--json", default=None, help="also write the summary here")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ocr-soak-"))
    folder = work / "scans"
    folder.mkdir(parents=True, exist_ok=True)
    outbox_dir = work / "outbox-fs"
    small_fs = bool(args.disk_full_s) and mount_small_fs(outbox_dir, 64)
    if args.disk_full_s and not small_fs:
        print("soak: cannot mount a tmpfs for the outbox (not root?): no disk-full episodes", flush=True)
    outbox_dir.mkdir(parents=True, exist_ok=True)
    outbox_path = outbox_dir / "outbox.sqlite3"
    broker = Broker(extra_conf="autosave_interval 1\n")
    broker.start()
    rec = Recorder(broker.port, topic="ocr/soak/+/text", client_id="soak-recorder")
    rec.wait_subscribed()
    cfg = write_config(work / "config.yaml", {
        "device_id": "soak", "backend": "onnxruntime", "ocr": {**small_ocr(), "threads": args.threads},
        "cameras": [{"name": "scanner", "kind": "folder", "uri": str(folder), "done_action": "delete",
                     "dedup_window_s": 0, "watchdog_s": 0}],
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 5, "reconnect_min_s": 0.5,
                 "reconnect_max_s": 2.0, "stats_interval_s": 10.0},
        "outbox": {"path": str(outbox_path)},
        "metrics": {"port": free_port()},
    })
    log_path = work / "daemon.log"
    daemon = Daemon(cfg, log_path).start()

    produced: list[str] = []
    stop_producing = threading.Event()

    def produce() -> None:
        i = 0
        while not stop_producing.wait(1.0 / args.rate):
            text = waybill(i)
            render_label(folder / f"label_{i:06d}.png", text)
            produced.append(text)
            i += 1

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    t0 = time.monotonic()
    end = t0 + args.minutes * 60.0
    next_broker_kill = t0 + args.broker_kill_s
    next_daemon_kill = t0 + args.daemon_kill_s
    next_disk_full = t0 + args.disk_full_s if small_fs else float("inf")
    next_corrupt = t0 + args.corrupt_s if args.corrupt_s else float("inf")
    broker_kills = daemon_kills = disk_full_episodes = corrupt_episodes = 0
    rng = random.Random(9)
    usage: list[dict] = []
    next_sample = t0 + 30.0     # after the models are loaded
    print(f"soak: {args.minutes} min, {args.rate} labels/s, work dir {work}", flush=True)
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_broker_kill:
            broker.kill9()
            broker_kills += 1
            time.sleep(args.broker_down_s)
            broker.start()
            next_broker_kill = time.monotonic() + args.broker_kill_s
        if now >= next_daemon_kill:
            daemon.kill9()
            daemon_kills += 1
            daemon = Daemon(cfg, log_path).start()
            next_daemon_kill = now + args.daemon_kill_s
            next_sample = time.monotonic() + 30.0
        if now >= next_disk_full:
            filler = fill(outbox_dir)
            disk_full_episodes += 1
            time.sleep(args.disk_full_hold_s)
            filler.unlink()
            next_disk_full = time.monotonic() + args.disk_full_s
        if now >= next_corrupt:
            daemon.kill9()
            damage_middle_page(outbox_path, rng)
            corrupt_episodes += 1
            daemon = Daemon(cfg, log_path).start()
            next_corrupt = time.monotonic() + args.corrupt_s
            next_sample = time.monotonic() + 30.0
        if now >= next_sample and daemon.alive():
            sample = process_usage(daemon.proc.pid)
            if sample:
                usage.append({"t_s": round(now - t0), "daemon_start": daemon_kills + corrupt_episodes, **sample})
            next_sample = now + 5.0
        time.sleep(0.5)
        print(f"  t={now - t0:6.0f}s produced={len(produced)} received={len(rec.results())}", end="\r", flush=True)
    stop_producing.set()
    producer.join()
    expected = set(produced)
    got = lambda: {reading(m.json()) for m in rec.results()}
    wait_until(lambda: expected <= got(), args.drain_s, 1.0)
    daemon.signal(signal.SIGTERM)
    code = daemon.wait(60)
    time.sleep(1.0)
    rec.close()

    msgs = [m.json() for m in rec.results()]
    ids_by_text: dict[str, set] = defaultdict(set)
    count_by_text: dict[str, int] = defaultdict(int)
    for m in msgs:
        ids_by_text[reading(m)].add(m["id"])
        count_by_text[reading(m)] += 1
    received = expected & set(ids_by_text)
    misread = set(ids_by_text) - expected
    duplicated = sum(n - 1 for n in count_by_text.values())
    dup_other_id = sum(len(ids) - 1 for ids in ids_by_text.values())
    left_in_folder = len([p for p in folder.iterdir() if p.is_file()])
    db = sqlite3.connect(outbox_path)
    outbox_left = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    dead_letters = db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
    db.close()
    summary = {
        "minutes": args.minutes, "rate_per_s": args.rate, "broker_kills": broker_kills, "daemon_kills": daemon_kills,
        "produced": len(expected), "received": len(received),
        "pending": {"in_folder": left_in_folder, "in_outbox": outbox_left, "dead_letters": dead_letters},
        "lost": max(0, len(expected - received) - len(misread) - left_in_folder - outbox_left - dead_letters),
        "duplicated": duplicated, "duplicated_with_other_id": dup_other_id, "misread": len(misread),
        "messages": len(msgs), "daemon_exit": code,
        "disk_full_episodes": disk_full_episodes, "corrupt_episodes": corrupt_episodes,
        "set_aside_outboxes": len([p for p in outbox_dir.glob("outbox.sqlite3.corrupt-*")
                                   if not p.name.endswith(("-wal", "-shm"))]),
        "process": {"first": usage[0] if usage else None, "last": usage[-1] if usage else None,
                    "peak": {k: max(u[k] for u in usage) for k in ("rss_mib", "threads", "fds")} if usage else None},
    }
    print()
    print(json.dumps(summary, indent=1))
    if misread:
        print("misread (OCR):", sorted(misread)[:10])
    broker.close()
    if args.json:
        Path(args.json).write_text(json.dumps({**summary, "samples": usage}, indent=1) + "\n")
    if small_fs:
        subprocess.run(["umount", str(outbox_dir)], capture_output=True)
    return 0 if summary["lost"] == 0 and dup_other_id == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
