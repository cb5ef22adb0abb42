"""Helpers for the service tests: rendered label images with known text, config files, and the daemon process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import yaml
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def waybill(i: int) -> str:
    return f"SF{7300000000 + i * 7919:010d}"


def render_label(path: Path, text: str) -> None:
    """A small white label with one line of dark text: quick to OCR, read without doubt."""
    font = ImageFont.truetype(FONT, 36)
    im = Image.new("RGB", (520, 96), "white")
    ImageDraw.Draw(im).text((20, 24), text, font=font, fill=(20, 20, 20))
    tmp = path.with_name(path.name + ".tmp")
    im.save(tmp, format="PNG")
    os.replace(tmp, path)


def small_ocr() -> dict:
    """OCR settings that keep the ONNX work small on a 2-core box (labels are 520x96)."""
    return {"det_input_size": [128, 640], "use_angle_classifier": False, "threads": 1}


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# `ocr-daemon run` as systemd starts it: the CLI imports only the chosen command's module.
_LAUNCH = "import sys; from daemon.cli import main; sys.exit(main(['run', *sys.argv[1:]]))"


class Daemon:
    """The daemon's `run` subcommand as a child process, its log in a file."""

    def __init__(self, config: Path, log_path: Path, env: Optional[dict] = None):
        self.config, self.log_path = config, log_path
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Daemon":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-c", _LAUNCH, "--config", str(self.config)],
                                     cwd=str(self.config.parent), env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout_s)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if text in self.log():
                return True
            if not self.alive():
                return text in self.log()
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.kill9()


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET, error statuses included (/healthz answers 503 with a body)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@contextmanager
def work_loop(service) -> Iterator[threading.Thread]:
    """A started in-process Service's work loop on a thread, as `ocr-daemon run` runs it. On the way out the
    service is asked to stop, and its loop must end (a drain that hangs fails the test)."""
    loop = threading.Thread(target=service.run)
    loop.start()
    try:
        yield loop
    finally:
        service.request_stop()
        loop.join(timeout=60)
    assert not loop.is_alive()


@contextmanager
def mqtt_client(port: int, client_id: str):
    """A plain paho client on the loopback broker, its network loop running (a PLC or a SCADA client)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        yield client
    finally:
        client.loop_stop()
        client.disconnect()

