"""`ocr-daemon outbox dead-letters | replay` as an operator runs it: a real subprocess on a real outbox file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from daemon.config import OutboxConfig
from daemon.publish.outbox import Outbox

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon", "outbox", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_dead_letters_are_listed_and_replayed_by_id_or_all_while_the_outbox_is_open(tmp_path):
    path = tmp_path / "state" / "outbox.sqlite3"
    conf = tmp_path / "config.yaml"
    conf.write_text(f"outbox:\n  path: {path}\n  dead_letter_after_failures: 1\n")
    ob = Outbox(OutboxConfig(path=str(path), dead_letter_after_failures=1))   # the running daemon's
    for i in range(3):
        ob.put("gate", "ocr/dev/gate/text", f"dev:gate:{i + 1}:0", b"x" * (10 + i))
    rows = ob.pending(10)
    for r in rows:
        assert ob.record_failure(r.id, "PUBACK Not authorized (0x87)") == "dead_letter"
    assert ob.depth()[0] == 0

    out = _cli("dead-letters", "--config", str(conf))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and lines[0].split("\t")[:4] == [str(rows[0].id), "gate", "dev:gate:1:0", "10 B"]
    assert "Not authorized" in lines[0] and "3 dead letters" in out.stderr
    docs = [json.loads(line) for line in _cli("dead-letters", "--config", str(conf), "--json").stdout.splitlines()]
    assert [d["failures"] for d in docs] == [1, 1, 1] and docs[2]["bytes"] == 12

    out = _cli("replay", "--config", str(conf), "--id", str(rows[1].id))
    assert out.returncode == 0 and "replayed 1" in out.stdout
    assert [r.msg_id for r in ob.pending(10)] == ["dev:gate:2:0"] and ob.dead_letter_count() == 2
    out = _cli("replay", "--config", str(conf), "--id", "99999")
    assert out.returncode == 1 and "99999" in out.stderr
    out = _cli("replay", "--config", str(conf), "--all")
    assert out.returncode == 0 and "replayed 2" in out.stdout
    assert [r.msg_id for r in ob.pending(10)] == ["dev:gate:1:0", "dev:gate:2:0", "dev:gate:3:0"]
    assert ob.depth() == (3, 33) and ob.health().dead_letters == 0
    assert _cli("replay", "--config", str(conf)).returncode == 2   # --id or --all is required
    ob.close()


def test_the_outbox_commands_run_by_hand_need_none_of_the_unit_s_secrets(tmp_path):
    # The unit reads its passwords from systemd credentials (a path that exists only inside it) or its own
    # environment: an operator at a shell has neither, and listing dead letters uses no secret.
    path = tmp_path / "state" / "outbox.sqlite3"
    conf = tmp_path / "config.yaml"
    conf.write_text(f"outbox:\n  path: {path}\n"
                    "mqtt:\n  password_file: /run/credentials/ocr-daemon.service/mqtt-password\n"
                    "web:\n  token_env: OCR_TEST_TOKEN_NOT_SET\n")
    Outbox(OutboxConfig(path=str(path))).close()
    out = _cli("dead-letters", "--config", str(conf))
    assert out.returncode == 0 and "0 dead letters" in out.stderr, out.stderr
    check = subprocess.run([sys.executable, "-m", "daemon", "check-config", str(conf)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 2 and "mqtt.password_file" in check.stderr   # what the daemon itself needs: checked
