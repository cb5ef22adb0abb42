"""Serving the page: the Flask app on daemon/http_server.py, the server that also serves /metrics and /healthz.

A request reaches one of `web.threads` workers only once it is complete, which it must be within the server's
request deadline of the accept; the worker never touches a socket, and a flood of idle or trickling connections
closes its own oldest ones, not a new visitor's. The page costs the daemon `web.threads` worker
threads plus the loop's one, whatever the clients do; its threads never touch the OCR backend.
"""
from __future__ import annotations

from daemon import http_server
from daemon.readings.trigger_commands import MAX_BODY_BYTES

# The largest body taken: a read-cycle trigger or recipe command's (the page's own POSTs are empty); a larger one
# is answered 413 by the server before it is read.
MAX_REQUEST_BODY = MAX_BODY_BYTES


class WebServer:
    def __init__(self, app, host: str, port: int, threads: int = 4,
                 request_timeout_s: float = http_server.REQUEST_TIMEOUT_S):
        self._server = http_server.HttpServer(app, host, port, name="web-http", workers=threads,
                                              request_timeout_s=request_timeout_s, max_body_bytes=MAX_REQUEST_BODY)

    @property
    def port(self) -> int:
        return self._server.port

    def stats(self) -> dict:
        """What clients did to the server: see HttpServer.stats()."""
        return self._server.stats()

    def start(self) -> "WebServer":
        self._server.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stops accepting, lets running requests finish for timeout_s, closes every connection."""
        self._server.stop(timeout_s)
