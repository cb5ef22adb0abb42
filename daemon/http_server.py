"""The daemon's HTTP server, under /metrics and /healthz (daemon/metrics.py) and under the page (daemon/web/server.py):
a WSGI app served so that no client, however slow, broken or hostile, can take the health probe away.

Found from outside: six clients trickling one header line every 5 s each pinned a worker of the old metrics
server forever, and 64 idle connections filled the old page server's (waitress's) connection limit. Here:

- One loop thread accepts, reads and writes every connection without blocking. A request reaches a worker only
  when it is complete: its head (at most max_head_bytes) and its body (at most max_body_bytes) must be in within
  request_timeout_s of the accept, however the bytes trickle; a connection that misses that is closed without
  a reply. A head too large (431), a body too large (413), a chunked body (411) or a malformed head (400) is
  answered by the loop itself.
- `workers` threads call the app with the whole request in memory and hand back the whole reply. No worker ever
  touches a socket, so none waits for a client: each request takes what the app takes.
- The loop writes the reply and then closes: one request per connection (``Connection: close``), so there is no
  idle keep-alive connection to hold. A client that has not taken all of the reply within write_timeout_s of it
  being ready is cut off.
- At most max_per_client connections per client address and max_connections in all. An arrival beyond either
  closes the oldest connection that is still sending its request or being sent its reply (never one a worker
  holds) rather than being refused: a flood of idle or trickling sockets cannot lock out a fresh health probe,
  which is the newest and completes its request within a millisecond of connecting.

Threads: 1 + workers, whatever the clients do. Memory: at most max_connections requests and replies.
"""
from __future__ import annotations

import email.utils
import io
import logging
import queue
import re
import selectors
import socket
import sys
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional
from urllib.parse import unquote_to_bytes, urlsplit

log = logging.getLogger(__name__)

# A browser's or a scraper's request head is under 2 KiB and arrives in one packet; 5 s is for a lossy plant
# network, not for a client that sends a line now and then.
REQUEST_TIMEOUT_S = 5.0     # accept to a complete request (head and body), however it trickles
WRITE_TIMEOUT_S = 10.0      # reply ready to reply taken, whole; a frame JPEG over a slow VPN fits
MAX_HEAD_BYTES = 8192       # request line and headers
MAX_CONNECTIONS = 64        # open connections in all; beyond it the oldest one not with a worker is closed
MAX_PER_CLIENT = 16         # the same per client address (a browser opens up to 6)
LINGER_S = 2.0              # after the reply, what the client still sends is read and dropped this long, so that
                            # closing does not reset a connection before the client has read its reply
_RECV_BYTES = 16384
_MAX_HEADERS = 100

Wsgi = Callable[[dict, Callable], Iterable[bytes]]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS = re.compile(r"[1-5]\d\d [^\r\n]*")
# Set by the server, never by the app; a client's Connection header means nothing here (one request each).
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
# As waitress's clear_untrusted_proxy_headers did: no proxy is trusted, so what a client says about one is dropped.
_PROXY_HEADERS = {"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
                  "x-forwarded-by"}

_READING, _WORKING, _WRITING, _LINGERING = "reading", "working", "writing", "lingering"


@dataclass(frozen=True)
class Request:
    """A complete request as the loop read it: what a worker gets."""
    method: str
    target: str
    version: str
    headers: tuple          # ((lower-case name, value), ...) in the order sent
    body: bytes
    client: tuple           # the peer's (address, port, ...)


class _Refused(Exception):
    """A request the loop answers itself, with a status and a line of text."""

    def __init__(self, status: str, why: str):
        super().__init__(why)
        self.status = status


def parse_head(raw: bytes, max_body_bytes: int) -> tuple:
    """(method, target, version, headers, content_length, expects_continue) of a request head without its blank
    line; _Refused for anything this server does not take."""
    lines = [line[:-1] if line.endswith(b"\r") else line for line in raw.split(b"\n")]
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _TARGET.fullmatch(parts[1]):
        raise _Refused("400 Bad Request", "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        if re.fullmatch(rb"HTTP/\d\.\d", version):
            raise _Refused("505 HTTP Version Not Supported", "HTTP/1.0 and HTTP/1.1 only")
        raise _Refused("400 Bad Request", "malformed request line")
    if len(lines) - 1 > _MAX_HEADERS:
        raise _Refused("431 Request Header Fields Too Large", f"more than {_MAX_HEADERS} header lines")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):   # a folded line starts with a space: not a token either
            raise _Refused("400 Bad Request", "malformed header line")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise _Refused("400 Bad Request", "control character in a header value")
        headers.append((name.decode("ascii").lower(), value.decode("latin-1")))
    if any(n == "transfer-encoding" for n, _ in headers):
        raise _Refused("411 Length Required", "send the body with Content-Length, not chunked")
    lengths = {v for n, v in headers if n == "content-length"}
    if len(lengths) > 1 or (lengths and not next(iter(lengths)).isdigit()):
        raise _Refused("400 Bad Request", "bad Content-Length")
    content_length = int(next(iter(lengths))) if lengths else 0
    if content_length > max_body_bytes:
        raise _Refused("413 Content Too Large", f"a body of at most {max_body_bytes} bytes")
    expects_continue = any(n == "expect" and v.lower() == "100-continue" for n, v in headers)
    return (method.decode("ascii"), target.decode("latin-1"), version.decode("ascii"), tuple(headers),
            content_length, expects_continue)


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    client: tuple
    deadline: float
    state: str = _READING
    buf: bytearray = field(default_factory=bytearray)
    head: Optional[tuple] = None        # parse_head's result, once the head is in
    out: memoryview = memoryview(b"")
    watched: bool = False               # registered with the selector
    closed: bool = False

    @property
    def address(self) -> str:
        return self.client[0] if self.client else ""


class HttpServer:
    """A WSGI app on host:port behind the loop described above.

    start() runs the loop thread and the workers; stop() stops accepting, lets the requests with a worker finish
    for up to timeout_s and closes every connection; thread count is then what it was before start(). The app is
    called from worker threads, several at once. stats() counts what the clients did to the server."""

    def __init__(self, app: Wsgi, host: str, port: int, *, name: str, workers: int = 4,
                 request_timeout_s: float = REQUEST_TIMEOUT_S, write_timeout_s: float = WRITE_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS, max_per_client: int = MAX_PER_CLIENT,
                 max_head_bytes: int = MAX_HEAD_BYTES, max_body_bytes: int = 0, server_header: str = "ocr-daemon"):
        self._app = app
        self._name = name
        self._workers = max(1, workers)
        self._request_timeout_s = request_timeout_s
        self._write_timeout_s = write_timeout_s
        self._max_connections = max(1, max_connections)
        self._max_per_client = max(1, min(max_per_client, max_connections))
        self._max_head_bytes = max_head_bytes
        self._max_body_bytes = max_body_bytes
        self._server_header = server_header
        family, _, _, _, sockaddr = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                       flags=socket.AI_PASSIVE)[0]
        self._listener = socket.create_server(sockaddr[:2], family=family, backlog=128)   # SO_REUSEADDR: reloads
        self._listener.setblocking(False)
        bound = self._listener.getsockname()
        self._port = bound[1]
        self._server_name = socket.gethostname() if host in ("", "0.0.0.0", "::") else host
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()       # (conn, Request) for the workers
        self._replies: queue.SimpleQueue = queue.SimpleQueue()    # (conn, reply bytes) for the loop
        self._conns: "OrderedDict[socket.socket, _Conn]" = OrderedDict()   # oldest first
        self._per_client: Counter = Counter()
        # Counted by the loop, read by stats() from any thread: every key exists from the start.
        self._stats = dict.fromkeys(("served", "timed_out", "write_timed_out", "evicted", "refused", "rejected",
                                     "gone"), 0)
        self._stopping = False
        self._stop_by = 0.0
        self._accept_paused_until = 0.0
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return self._port

    def stats(self) -> dict:
        """served: replies written whole; timed_out: closed without a complete request in request_timeout_s;
        write_timed_out: cut off while being sent a reply; evicted: closed to make room for a newer one;
        refused: closed at once, every other connection being with a worker; rejected: answered 4xx by the loop;
        gone: the client hung up first; open: connections now."""
        return {**self._stats, "open": len(self._conns)}

    def start(self) -> "HttpServer":
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._threads = [threading.Thread(target=self._loop, name=self._name, daemon=True)]
        self._threads += [threading.Thread(target=self._work, name=f"{self._name}-{i}", daemon=True)
                          for i in range(self._workers)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        if not self._threads:   # never started
            self._close_listener()
            self._sel.close()
            return
        self._stop_by = time.monotonic() + timeout_s
        self._stopping = True
        self._poke()
        self._threads[0].join(timeout_s + 5.0)
        for _ in range(self._workers):
            self._jobs.put(None)
        for t in self._threads[1:]:
            t.join(timeout_s)
        self._threads = []
        self._wake_r.close()
        self._wake_w.close()

    # ------------------------------------------------------------ the loop thread

    def _loop(self) -> None:
        try:
            while True:
                if self._stopping and self._drained():
                    return
                now = time.monotonic()
                ready = self._sel.select(self._wait_s(now))
                # Data that came in is read before a burst of new connections may need room.
                ready.sort(key=lambda ke: ke[0].data == "accept")
                for key, events in ready:
                    if key.data == "accept":
                        try:
                            self._accept()
                        except Exception:   # a bug must not take the server away: the next round accepts again
                            log.exception("%s: accept failed", self._name)
                    elif key.data == "wake":
                        try:
                            self._wake_r.recv(4096)
                        except OSError:
                            pass
                    elif not key.data.closed:   # (one evicted earlier in this round is left alone)
                        self._serve(key.data, events)
                self._take_replies()
                self._expire(time.monotonic())
        except Exception:   # a bug here must not pass silently: the server is gone
            log.exception("%s: the HTTP loop failed", self._name)
        finally:
            self._close_listener()
            for conn in list(self._conns.values()):
                self._close(conn)
            while True:   # requests no worker took: nobody waits for them any more
                try:
                    self._jobs.get_nowait()
                except queue.Empty:
                    break
            self._sel.close()

    def _serve(self, conn: _Conn, events: int) -> None:
        try:
            if events & selectors.EVENT_READ:
                self._read(conn)
            else:
                self._write(conn)
        except Exception:   # a bug met by one connection closes that one, not the server
            log.exception("%s: connection from %s failed", self._name, conn.client)
            self._close(conn)

    def _drained(self) -> bool:
        """On stop: no new connections, none still sending its request; done once the workers' replies are out."""
        self._close_listener()
        for conn in list(self._conns.values()):
            if conn.state in (_READING, _LINGERING):
                self._close(conn)
        return not self._conns or time.monotonic() >= self._stop_by

    def _wait_s(self, now: float) -> float:
        deadline = min((c.deadline for c in self._conns.values() if c.state != _WORKING), default=now + 1.0)
        if self._accept_paused_until:
            deadline = min(deadline, self._accept_paused_until)
        return max(0.0, min(deadline - now, 1.0, self._stop_by - now if self._stopping else 1.0))

    def _accept(self) -> None:
        for _ in range(8):   # a few at a time: between two batches, requests that came in are read first
            try:
                sock, client = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:   # out of file descriptors: make room, and pause so the loop does not spin
                log.warning("%s: accept failed: %s", self._name, exc)
                self._evict(None)
                self._sel.unregister(self._listener)
                self._accept_paused_until = time.monotonic() + 0.1
                return
            sock.setblocking(False)
            conn = _Conn(sock, client, time.monotonic() + self._request_timeout_s)
            if ((self._per_client[conn.address] >= self._max_per_client and not self._evict(conn.address))
                    or (len(self._conns) >= self._max_connections and not self._evict(None))):
                self._stats["refused"] += 1
                sock.close()
                continue
            self._conns[sock] = conn
            self._per_client[conn.address] += 1
            self._watch(conn, selectors.EVENT_READ)

    def _evict(self, address: Optional[str]) -> bool:
        """Closes the oldest connection (of address, if given) that no worker holds, a finished one first. One
        still sending its request gets a last read: a request already here goes to a worker instead, so a probe
        that arrived within a burst of connections is answered, not evicted by it."""
        candidates = [c for c in self._conns.values()
                      if c.state != _WORKING and (address is None or c.address == address)]
        candidates.sort(key=lambda c: c.state != _LINGERING)   # stable: finished ones first, each oldest first
        for victim in candidates:
            if victim.state == _READING:
                self._read(victim)
                if victim.closed:   # it hung up: room made
                    return True
                if victim.state == _WORKING:
                    continue
            if victim.state != _LINGERING:
                self._stats["evicted"] += 1
                log.debug("%s: %s closed to make room (%s)", self._name, victim.client, victim.state)
            self._close(victim)
            return True
        return False

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:   # reset: after a reply, the client left before reading all of it
            log.debug("%s: %s gone (%s): %s", self._name, conn.client, conn.state, exc)
            self._stats["gone"] += 1
            self._close(conn)
            return
        if not data:   # hung up; after a reply, that is the goodbye
            if conn.state == _READING:
                self._stats["gone"] += 1
            self._close(conn)
            return
        if conn.state != _READING:   # lingering: dropped
            return
        conn.buf += data
        try:
            self._advance(conn)
        except _Refused as r:
            self._stats["rejected"] += 1
            log.debug("%s: %s refused: %s %s", self._name, conn.client, r.status, r)
            self._start_reply(conn, _plain(r.status, f"{r}\n", self._server_header))

    def _advance(self, conn: _Conn) -> None:
        """Whether the request is complete yet; a complete one goes to the workers."""
        if conn.head is None:
            while conn.buf[:1] in (b"\r", b"\n"):   # empty lines before a request are ignored (RFC 9112 2.2)
                del conn.buf[:1]
            end = _HEAD_END.search(conn.buf, 0, self._max_head_bytes + 4)
            if end is None:
                if len(conn.buf) > self._max_head_bytes:
                    raise _Refused("431 Request Header Fields Too Large",
                                   f"a head of at most {self._max_head_bytes} bytes")
                return
            conn.head = parse_head(bytes(conn.buf[:end.start()]), self._max_body_bytes)
            del conn.buf[:end.end()]
            if conn.head[5] and len(conn.buf) < conn.head[4]:
                try:   # the first bytes this server sends: they fit any socket buffer
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                except OSError:
                    pass
        method, target, version, headers, content_length, _ = conn.head
        if len(conn.buf) < content_length:
            return
        request = Request(method, target, version, headers, bytes(conn.buf[:content_length]), conn.client)
        conn.buf = bytearray()   # anything after the body is not read: one request per connection
        conn.state = _WORKING
        self._unwatch(conn)
        self._jobs.put((conn, request))

    def _take_replies(self) -> None:
        while True:
            try:
                conn, reply = self._replies.get_nowait()
            except queue.Empty:
                return
            if not conn.closed:
                self._start_reply(conn, reply)

    def _start_reply(self, conn: _Conn, reply: bytes) -> None:
        conn.state = _WRITING
        conn.out = memoryview(reply)
        conn.deadline = time.monotonic() + self._write_timeout_s
        self._write(conn)
        if conn.state == _WRITING and not conn.closed:
            self._watch(conn, selectors.EVENT_WRITE)

    def _write(self, conn: _Conn) -> None:
        try:
            while conn.out:
                conn.out = conn.out[conn.sock.send(conn.out):]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:   # the client went away: nothing to fix here
            log.debug("%s: %s gone mid-reply: %s", self._name, conn.client, exc)
            self._stats["gone"] += 1
            self._close(conn)
            return
        self._stats["served"] += 1
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.state = _LINGERING
        conn.deadline = time.monotonic() + LINGER_S
        self._watch(conn, selectors.EVENT_READ)

    def _expire(self, now: float) -> None:
        if self._accept_paused_until and now >= self._accept_paused_until and not self._stopping:
            self._accept_paused_until = 0.0
            self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        for conn in [c for c in self._conns.values() if c.state != _WORKING and c.deadline <= now]:
            if conn.state == _READING:
                self._stats["timed_out"] += 1
                log.debug("%s: %s sent no complete request in %.1f s", self._name, conn.client,
                          self._request_timeout_s)
            elif conn.state == _WRITING:
                self._stats["write_timed_out"] += 1
                log.debug("%s: %s did not take its reply in %.1f s", self._name, conn.client, self._write_timeout_s)
            self._close(conn)

    def _watch(self, conn: _Conn, events: int) -> None:
        if conn.watched:
            self._sel.modify(conn.sock, events, conn)
        else:
            self._sel.register(conn.sock, events, conn)
            conn.watched = True

    def _unwatch(self, conn: _Conn) -> None:
        if conn.watched:
            self._sel.unregister(conn.sock)
            conn.watched = False

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._unwatch(conn)
        del self._conns[conn.sock]
        self._per_client[conn.address] -= 1
        if self._per_client[conn.address] <= 0:
            del self._per_client[conn.address]
        try:
            conn.sock.close()
        except OSError:
            pass

    def _close_listener(self) -> None:
        if self._listener.fileno() < 0:
            return
        try:
            self._sel.unregister(self._listener)
        except (KeyError, ValueError, RuntimeError):   # paused, or never registered, or the selector is closed
            pass
        self._listener.close()

    def _poke(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:   # full (the loop is waking anyway) or closed (stopped)
            pass

    # ------------------------------------------------------------ the workers

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            conn, request = job
            try:
                reply = self._call_app(request)
            except Exception:
                log.exception("%s: %s %s failed", self._name, request.method, request.target)
                reply = _plain("500 Internal Server Error", "internal error\n", self._server_header)
            self._replies.put((conn, reply))
            self._poke()

    def _call_app(self, request: Request) -> bytes:
        started: list = []
        chunks: list = []

        def start_response(status: str, headers: list, exc_info=None):
            if started and not exc_info:
                raise AssertionError("start_response called twice without exc_info")
            started[:] = [status, headers]   # nothing is sent before the app returns: an error may replace it
            return chunks.append

        result = self._app(self._environ(request), start_response)
        try:
            for chunk in result:
                if chunk:
                    chunks.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise AssertionError("the app returned without start_response")
        return _reply(started[0], started[1], b"".join(chunks), self._server_header, request.method == "HEAD")

    def _environ(self, request: Request) -> dict:
        """PEP 3333's environ for a request: the path %-decoded as latin-1, headers as HTTP_* (repeated ones joined);
        a name with "_" is dropped, as it would read like the same name with "-"."""
        if request.target.startswith("/"):
            path, _, query = request.target.partition("?")
        else:   # absolute form ("http://host/path"): a proxy's; "*" and the like get an empty path
            parts = urlsplit(request.target)
            path, query = parts.path, parts.query
        env = {
            "REQUEST_METHOD": request.method, "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"), "QUERY_STRING": query,
            "SERVER_NAME": self._server_name, "SERVER_PORT": str(self._port), "SERVER_PROTOCOL": request.version,
            "REMOTE_ADDR": str(request.client[0]) if request.client else "",
            "REMOTE_PORT": str(request.client[1]) if len(request.client) > 1 else "",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(request.body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False, "wsgi.input_terminated": True,
        }
        if request.body or any(n == "content-length" for n, _ in request.headers):
            env["CONTENT_LENGTH"] = str(len(request.body))
        for name, value in request.headers:
            if name == "content-length" or "_" in name or name in _PROXY_HEADERS:
                continue
            key = "CONTENT_TYPE" if name == "content-type" else "HTTP_" + name.upper().replace("-", "_")
            if key in env:
                env[key] += ("; " if name == "cookie" else ",") + value
            else:
                env[key] = value
        return env


def _reply(status: str, headers: list, body: bytes, server_header: str, head_only: bool = False) -> bytes:
    """The bytes of a whole reply: the app's status and headers, with Date, Server, Content-Length and
    Connection: close added; a header the app may not set (hop-by-hop) is left out."""
    if not _STATUS.fullmatch(status):
        raise ValueError(f"bad status line {status!r}")
    lines = [f"HTTP/1.1 {status}"]
    names = set()
    for name, value in headers:
        if "\r" in value or "\n" in value or not _TOKEN.fullmatch(name.encode("latin-1")):
            raise ValueError(f"bad header {name!r}")
        low = name.lower()
        if low in _HOP_BY_HOP:
            continue
        names.add(low)
        lines.append(f"{name}: {value}")
    if "date" not in names:
        lines.append("Date: " + email.utils.formatdate(usegmt=True))
    if "server" not in names and server_header:
        lines.append(f"Server: {server_header}")
    bodyless = status[:3] in ("204", "304") or status[0] == "1"
    if "content-length" not in names and not bodyless and not head_only:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only or bodyless else head + body


def _plain(status: str, text: str, server_header: str) -> bytes:
    return _reply(status, [("Content-Type", "text/plain; charset=utf-8")], text.encode(), server_header)
