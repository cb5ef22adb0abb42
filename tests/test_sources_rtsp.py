"""The RTSP source against a real RTSP server (gst-rtsp-server, basic auth, Motion-JPEG of a rendered label):
readings reach the outbox, a server stopped and started again is survived (watchdog restart, reconnect with
backoff), and the password in the URI never appears in the daemon's log, /healthz or /metrics.

The server runs under /usr/bin/python3 (Debian's gi module); the daemon reads the stream with the venv's
OpenCV through FFmpeg. Every wait has a deadline; nothing asserts on how fast it goes."""
import json
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from broker import free_port, wait_until
from daemon.sources.redact import redact_uri
from service_support import Daemon, render_label, small_ocr, waybill, write_config

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"
USER, PASSWORD = "ocr", "S3cr3t-pw.42"


def _server_available() -> str:
    if not shutil.which(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "missing = [e for e in ('pngdec', 'imagefreeze', 'jpegenc', 'rtpjpegpay') "
             "if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))")
    out = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return ("gst-rtsp-server through python3-gi is not importable (apt: gstreamer1.0-rtsp "
                f"gir1.2-gst-rtsp-server-1.0 python3-gi): {out.stderr.strip().splitlines()[-1:]}")
    if out.stdout.strip():
        return f"GStreamer elements missing: {out.stdout.strip()} (apt: gstreamer1.0-plugins-good)"
    import cv2

    if not any(line.strip().startswith("FFMPEG:") and "YES" in line for line in cv2.getBuildInformation().splitlines()):
        return "this OpenCV has no FFmpeg backend to read rtsp://"
    return ""


class RtspServer:
    def __init__(self, port: int, image: Path, log_path: Path):
        self.port, self.image, self.log_path = port, image, log_path
        self.proc = None

    def start(self) -> "RtspServer":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), str(self.port), str(self.image),
                                      USER, PASSWORD], stdout=subprocess.PIPE, stderr=log)
        log.close()
        line = self.proc.stdout.readline()   # "ready" once it listens (EOF if it died)
        assert line.strip() == b"ready", self.log_path.read_text(errors="replace")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)   # the way a camera vanishes: no RTSP TEARDOWN
            self.proc.wait(10)
            self.proc.stdout.close()


def _rows(outbox: Path) -> list[dict]:
    if not outbox.exists():
        return []
    try:
        with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5) as db:
            return [json.loads(p) for (p,) in db.execute("SELECT payload FROM outbox ORDER BY id")]
    except sqlite3.OperationalError:   # the table is not there yet
        return []


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:   # 503 while unhealthy still has a body
        return exc.read().decode("utf-8", "replace")


def test_redact_uri_hides_every_password_form():
    assert redact_uri(f"rtsp://{USER}:{PASSWORD}@cam:554/s") == f"rtsp://{USER}:***@cam:554/s"
    assert redact_uri("cannot open rtsp source 'rtsp://a:p@ss@h/x'") == "cannot open rtsp source 'rtsp://a:***@h/x'"
    assert redact_uri('rtspsrc location=rtsp://u:pw@h/x user-id=u user-pw="two words" ! appsink') == \
        'rtspsrc location=rtsp://u:***@h/x user-id=u user-pw="***" ! appsink'
    assert redact_uri("http://h/cgi?user=a&password=b&pwd=c&x=1") == "http://h/cgi?user=a&password=***&pwd=***&x=1"
    for plain in ("rtsp://cam/stream", "rtsp://user@cam/stream", "/dev/video0", "", "/srv/scans"):
        assert redact_uri(plain) == plain


def test_rtsp_camera_reads_reconnects_and_never_logs_the_password(tmp_path):
    why = _server_available()
    if why:
        pytest.skip(why)
    text = waybill(17)
    image = tmp_path / "label.png"
    render_label(image, text)
    port, metrics_port = free_port(), free_port()
    outbox = tmp_path / "outbox.sqlite3"
    uri = f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{port}/label"
    cfg = write_config(tmp_path / "config.yaml", {
        "device_id": "dock", "backend": "onnxruntime", "ocr": small_ocr(),
        "cameras": [{"name": "gate", "kind": "rtsp", "uri": uri, "max_fps": 2, "dedup_window_s": 0,
                     "watchdog_s": 3, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}],
        "mqtt": {"enabled": False}, "outbox": {"path": str(outbox)},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": metrics_port},
        "service": {"stall_timeout_s": 600},
    })
    server = RtspServer(port, image, tmp_path / "server.log").start()
    d = Daemon(cfg, tmp_path / "daemon.log").start()
    pages = []
    try:
        assert d.wait_log(f"opened (rtsp rtsp://{USER}:***@127.0.0.1:{port}/label)", 90), d.log()
        assert wait_until(lambda: any(text in "".join(t["text"] for t in m["texts"]).replace(" ", "")
                                      for m in _rows(outbox)), 90), d.log()
        assert _rows(outbox)[0]["source"] == {"kind": "rtsp"}
        assert server.proc.poll() is None, (server.proc.poll(), d.log())
        # The stream stalls (server frozen, its TCP connection open): no frame, no error; the capture
        # watchdog restarts the source.
        server.proc.send_signal(signal.SIGSTOP)
        assert d.wait_log("no frame for", 60), d.log()
        # Then the camera is gone for good: the source retries with backoff.
        server.stop()
        opened_before = d.log().count("opened (rtsp")
        assert wait_until(lambda: "retrying in" in d.log(), 60), d.log()
        assert f"nothing answers on 127.0.0.1:{port}" in d.log()     # why, not only "cannot open"
        pages += [_get(f"http://127.0.0.1:{metrics_port}/healthz"), _get(f"http://127.0.0.1:{metrics_port}/metrics")]
        assert f"nothing answers on 127.0.0.1:{port}" in json.loads(pages[0])["camera_errors"]["gate"]
        before = len(_rows(outbox))
        server = RtspServer(port, image, tmp_path / "server.log").start()
        assert wait_until(lambda: d.log().count("opened (rtsp") > opened_before, 90), d.log()
        assert wait_until(lambda: len(_rows(outbox)) > before, 90), d.log()
        pages.append(_get(f"http://127.0.0.1:{metrics_port}/healthz"))
        d.signal(signal.SIGTERM)
        assert d.wait(60) == 0
    finally:
        d.close()
        server.stop()
    log = d.log()
    assert PASSWORD not in log, [line for line in log.splitlines() if PASSWORD in line]
    assert f"{USER}:***@" in log
    for page in pages:
        assert PASSWORD not in page
