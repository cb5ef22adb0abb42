"""Issue 28, item 4: slow, idle and broken clients against both HTTP servers, over real sockets. Six clients that
trickle a header line every second, or hundreds of idle ones, used to take /healthz and the page away; now a
request must be complete within the server's deadline of the accept, workers only ever see complete requests,
and a flood closes its own oldest connections instead of refusing the newest."""
from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest

from daemon.http_server import HttpServer
from daemon.metrics import Metrics, MetricsServer
from daemon.web.app import SAVE_HEADER, PageFeed, create_app
from daemon.web.server import MAX_REQUEST_BODY, WebServer

DEADLINE_S = 1.5          # the servers' request deadline in these tests (the default is longer)
ANSWER_WITHIN_S = 3.0     # what a probe may take while the attack goes on: generous, the box is shared


def page_feed() -> PageFeed:
    return PageFeed(state=lambda: {"cameras": {}}, latest=lambda camera: None, roi=lambda camera: (),
                    save=lambda camera: None, evidence_path=lambda msg_id, line: None, device="box1")


@pytest.fixture
def servers():
    """The metrics server and the page's server, both with a short request deadline; their threads started."""
    metrics = MetricsServer(Metrics(lambda: {}), lambda: (True, {"cameras": {}}), "127.0.0.1", 0,
                            request_timeout_s=DEADLINE_S).start()
    page = WebServer(create_app(page_feed()), "127.0.0.1", 0, threads=2, request_timeout_s=DEADLINE_S).start()
    try:
        yield {"/healthz": metrics, "/": page}
    finally:
        metrics.stop()
        page.stop()


def fetch(port: int, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None,
          timeout_s: float = 10.0) -> tuple[int, bytes, float]:
    """(status, body, seconds taken) of one request on a fresh connection."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), time.monotonic() - t0
    finally:
        conn.close()


def raw(port: int, data: bytes, timeout_s: float = 10.0) -> bytes:
    """Sends bytes at once and reads until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


class Tricklers:
    """n clients that each send a request line, then one header line every interval_s, forever: a connection the
    server closes is opened again at the next tick, as a persistent attacker would."""

    def __init__(self, port: int, n: int, interval_s: float):
        self.port, self.n, self.interval_s = port, n, interval_s
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Tricklers":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        s.sendall(b"GET / HTTP/1.1\r\n")
        return s

    def _run(self) -> None:
        socks = [self._open() for _ in range(self.n)]
        k = 0
        while not self._stop.wait(self.interval_s):
            for i, s in enumerate(socks):
                try:
                    s.sendall(b"X-Trickle-%d: %d\r\n" % (i, k))
                except OSError:   # cut off: come back
                    s.close()
                    socks[i] = self._open()
                    self.reopened += 1
            k += 1
        for s in socks:
            s.close()


@pytest.mark.parametrize("path", ["/healthz", "/"])
def test_six_trickling_clients_do_not_take_the_server_away(servers, path):
    server = servers[path]
    with Tricklers(server.port, 6, interval_s=1.0) as tricklers:
        time.sleep(0.5)
        end = time.monotonic() + 3 * DEADLINE_S   # across several deadlines: the tricklers are cut off and come back
        answers = []
        while time.monotonic() < end:
            status, _, took_s = fetch(server.port, path)
            assert status == 200 and took_s < ANSWER_WITHIN_S, (status, took_s)
            answers.append(took_s)
            time.sleep(0.2)
    assert len(answers) >= 5
    assert tricklers.reopened >= 6   # each was cut off at least once, however it trickled
    assert server.stats()["timed_out"] >= 6


@pytest.mark.parametrize("n", [64, 70, 200])
def test_idle_connections_leave_room_for_a_health_probe_and_the_page(servers, n):
    before = threading.active_count()   # both servers' loops and workers run already
    idle = []
    try:
        for _ in range(n):
            for server in servers.values():
                idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        for path, server in servers.items():
            status, body, took_s = fetch(server.port, path)
            assert status == 200 and took_s < ANSWER_WITHIN_S, (path, status, took_s)
            assert server.stats()["open"] <= 64 + 1
        assert b'"healthy":true' in fetch(servers["/healthz"].port, "/healthz")[1]
        assert threading.active_count() <= before   # no thread per connection
    finally:
        for s in idle:
            s.close()


def test_idle_and_half_sent_requests_are_closed_after_the_deadline_without_a_reply(servers):
    port = servers["/healthz"].port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as idle, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as half:
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")   # the head never ends
        t0 = time.monotonic()
        assert idle.recv(1) == b"" and half.recv(4096) == b""   # the server hung up; a 10 s timeout would raise
        assert DEADLINE_S - 0.2 < time.monotonic() - t0 < DEADLINE_S + 3.0


def test_a_trickler_is_closed_at_the_deadline_however_often_it_sends(servers):
    port = servers["/"].port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t0 = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\n")
        cut_off_s = None
        for k in range(100):   # a line every 0.1 s: an idle timeout would never fire
            try:
                s.sendall(b"X-Line-%d: x\r\n" % k)
            except OSError:
                cut_off_s = time.monotonic() - t0
                break
            time.sleep(0.1)
        assert cut_off_s is not None, "still open after 10 s"
        assert DEADLINE_S - 0.2 < cut_off_s < DEADLINE_S + 3.0


def test_a_request_sent_in_pieces_within_the_deadline_gets_its_answer(servers):
    port = servers["/healthz"].port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for piece in (b"GET /heal", b"thz HTTP/1.1\r\nHost: 127.", b"0.0.1\r\n", b"\r\n"):
            s.sendall(piece)
            time.sleep(0.1)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ") and b"Connection: close\r\n" in reply
    assert reply.endswith(b'{"healthy":true,"cameras":{}}')


def test_a_request_with_a_worker_is_never_evicted_by_a_flood():
    release = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            release.wait(20)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    server = HttpServer(app, "127.0.0.1", 0, name="test-http", workers=2, max_connections=8, max_per_client=4).start()
    flood = []
    try:
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        slow.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)   # with a worker now
        flood = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(50)]
        assert fetch(server.port, "/fast")[:2] == (200, b"/fast")
        release.set()
        reply = b""
        while chunk := slow.recv(65536):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"/slow")
        assert server.stats()["evicted"] >= 50 - 4
    finally:
        release.set()
        for s in flood:
            s.close()
        server.stop()


def test_a_client_that_does_not_take_its_reply_is_cut_off():
    big = b"x" * (64 << 20)   # more than any socket buffer holds

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [big]

    server = HttpServer(app, "127.0.0.1", 0, name="test-http", workers=1, write_timeout_s=1.0).start()
    try:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect(("127.0.0.1", server.port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(16).startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 10
        while server.stats()["write_timed_out"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)   # reading nothing more
        assert server.stats()["write_timed_out"] == 1
        s.close()
    finally:
        server.stop()


def test_malformed_and_oversized_requests_are_answered_by_the_loop(servers):
    port = servers["/"].port
    assert raw(port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431 ")
    assert raw(port, b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n").startswith(b"HTTP/1.1 431 ")
    assert raw(port, b"GET /\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(port, b"GET / HTTP/1.1\r\n folded: x\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(port, b"GET / HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    assert raw(port, b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx").startswith(b"HTTP/1.1 400 ")
    assert raw(port, b"POST /api/cameras/dock/save HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                     b"\r\n0\r\n\r\n").startswith(b"HTTP/1.1 411 ")
    big = (b"POST /api/cameras/dock/save HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
           % (MAX_REQUEST_BODY + 1))
    assert raw(port, big + b"a" * (MAX_REQUEST_BODY + 1)).startswith(b"HTTP/1.1 413 ")
    assert fetch(port, "/")[0] == 200   # and the server goes on


def test_the_page_keeps_its_access_rules_through_the_server(servers):
    port = servers["/"].port
    assert fetch(port, "/", headers={"Host": "evil.example:8088"})[0] == 403   # DNS rebinding
    assert fetch(port, "/api/cameras/dock/save", "POST", body=b"")[0] == 403   # no page header: no cross-site form
    assert fetch(port, "/api/cameras/dock/save", "POST", headers={SAVE_HEADER: "1"}, body=b"")[0] == 404   # no frame
    status, body, _ = fetch(port, "/api/state")
    assert status == 200 and body.startswith(b"{")
    assert fetch(port, "/api/state", "HEAD")[:2] == (200, b"")


def test_metrics_answers_get_and_head_only(servers):
    port = servers["/healthz"].port
    assert fetch(port, "/metrics")[0] == 200
    assert fetch(port, "/healthz", "HEAD")[:2] == (200, b"")
    assert fetch(port, "/metrics", "POST", body=b"")[0] == 405
    assert fetch(port, "/metrics", "POST", body=b"x")[0] == 413   # a scrape has no body


def test_the_bench_runs_and_writes_its_table(tmp_path):
    """bench/slow_clients.py, one short case: what a maintainer reruns still runs."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "slow.json"
    run = subprocess.run([sys.executable, str(root / "bench" / "slow_clients.py"), "--n", "6", "--modes", "trickle",
                          "--servers", "metrics", "--seconds", "1", "--json", str(out)],
                         cwd=root, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "| metrics | /healthz | trickle | 6 |" in run.stdout
    (row,) = json.loads(out.read_text())["rows"]
    assert row["probes"] >= 1 and row["failures"] == 0
