"""`ocr-daemon outbox dead-letters | replay`: look at the readings the publisher gave up on, and queue them again.

A row lands in the dead letters when it can never be delivered as it is (above mqtt.max_payload_bytes or the
broker's Maximum Packet Size) or failed outbox.dead_letter_after_failures times (e.g. an ACL refusing its
topic). Fix the cause, then `replay`: the rows go back into the outbox with their old id (so they are sent
first), their message id and payload unchanged, a fresh TTL age and no failures. Safe while the daemon runs
(SQLite WAL; the daemon notices the change by itself).

Exit codes: 0 done, 1 an id was not among the dead letters or the outbox file does not exist, 2 bad config.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from daemon import config as config_mod


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="outbox_action", metavar="ACTION", required=True)
    listing = sub.add_parser("dead-letters", help="list the dead letters, oldest first")
    listing.add_argument("--config", default="config.yaml", metavar="FILE", help="config file (default: ./config.yaml)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line (payload not included)")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    replay = sub.add_parser("replay", help="move dead letters back into the outbox")
    replay.add_argument("--config", default="config.yaml", metavar="FILE", help="config file (default: ./config.yaml)")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, action="append", dest="ids", metavar="N", help="a dead letter's id (repeatable)")
    which.add_argument("--all", action="store_true", help="every dead letter")


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(args: argparse.Namespace) -> int:
    from daemon.publish.outbox import Outbox

    cfg = config_mod.load(args.config, read_secrets=False)   # a ConfigError: cli.main's one line, exit 2
    path = Path(cfg.outbox.path)
    if not path.exists():
        print(f"no outbox at {path}", file=sys.stderr)
        return 1
    ob = Outbox(cfg.outbox)
    try:
        if args.outbox_action == "dead-letters":
            dead = ob.dead_letters(limit=args.limit)
            for d in dead:
                if args.json:
                    print(json.dumps({"id": d.id, "sink": d.sink, "camera": d.camera, "topic": d.topic,
                                      "msg_id": d.msg_id,
                                      "bytes": len(d.payload), "failures": d.failures, "reason": d.reason,
                                      "created_at": _utc(d.created_at), "dead_at": _utc(d.dead_at)}))
                else:
                    print(f"{d.id}\t{d.camera}\t{d.msg_id}\t{len(d.payload)} B\t{d.failures} failures\t"
                          f"{_utc(d.dead_at)}\t{d.reason}")
            if not args.json:
                print(f"{ob.dead_letter_count()} dead letters in {path}", file=sys.stderr)
            return 0
        wanted = None if args.all else sorted(set(args.ids))
        known = {d.id for d in ob.dead_letters(limit=10**9)}   # every sink's: a replay gives each back its own
        moved = ob.replay_dead_letters(wanted)
        print(f"replayed {moved} dead letters into {path}")
        missing = [i for i in (wanted or []) if i not in known]
        if missing:
            print(f"not among the dead letters: {', '.join(map(str, missing))}", file=sys.stderr)
            return 1
        return 0
    finally:
        ob.close()
