"""Serving the page: waitress (a pure-Python WSGI server with a fixed pool of worker threads) in one thread.

waitress parses HTTP, limits what a client may send and closes idle connections; its threads never touch the OCR
backend. The page costs the daemon `web.threads` worker threads plus this one, whatever the clients do.
"""
from __future__ import annotations

import logging
import threading
from typing import Optional

log = logging.getLogger(__name__)
# waitress warns "Task queue depth is N" whenever a request waits for a worker: a page loading its crops does
# that by design, and the journal is no place for it.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)

CHANNEL_TIMEOUT_S = 30      # an idle keep-alive connection is closed after this
CONNECTION_LIMIT = 64       # connections at once; more wait in the listen backlog
MAX_REQUEST_BODY = 4096     # the page only ever POSTs an empty body


class WebServer:
    def __init__(self, app, host: str, port: int, threads: int = 4):
        from waitress.server import create_server

        self._server = create_server(app, host=host, port=port, threads=threads, ident="ocr-daemon",
                                     channel_timeout=CHANNEL_TIMEOUT_S, connection_limit=CONNECTION_LIMIT,
                                     max_request_body_size=MAX_REQUEST_BODY, clear_untrusted_proxy_headers=True,
                                     expose_tracebacks=False)
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def start(self) -> "WebServer":
        self._thread = threading.Thread(target=self._server.run, name="web-http", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stops accepting, lets running requests finish for timeout_s, closes every connection."""
        server = self._server
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout_s)
        for channel in list(server._map.values()):   # the listener, the trigger and each open connection
            try:
                channel.close()
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
