"""The page as the daemon runs it: its live view, its HTTP server, and what its routes read from the daemon.

The service hands OCR'd frames and readings to ``Page.live`` and starts and stops the page; what the request
threads read (the daemon's snapshot, the current config, the evidence store) comes through callables, so
nothing here imports the service.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from daemon.config import Config

log = logging.getLogger(__name__)

RETRY_S = 10.0   # a page port another program held is tried again this often (the work loop's turn asks)


class Page:
    def __init__(self, config: Callable[[], Config], snapshot: Callable[[], dict], evidence: Callable[[], Any]):
        from daemon.web.live import LiveView

        self._config = config          # the daemon's config now (a SIGHUP may have changed the cameras)
        self._snapshot = snapshot
        self._evidence = evidence      # the evidence store now (a SIGHUP may have replaced it)
        w = config().web
        self.live = LiveView(w.recent_readings, w.recent_rejects)
        self.server = None
        self._app = None               # the WSGI app, kept so that a port taken at start can be tried again
        self._token = False            # whether it asks for a token (for the log line)
        self._where = (w.host, w.port, w.threads)
        self._retry_at = 0.0

    @classmethod
    def start(cls, config: Callable[[], Config], snapshot: Callable[[], dict], evidence: Callable[[], Any],
              trigger: Optional[Callable[[str, bytes], tuple[str, bytes]]] = None,
              recipe: Optional[Callable[[str, bytes], tuple[str, bytes]]] = None) -> Optional["Page"]:
        """The page on web.host:web.port, or None with web off; a port in use is logged, not fatal (like metrics):
        the live view is kept, and retry() tries the port again."""
        from daemon.config import web_token
        from daemon.web.app import PageFeed, create_app

        cfg = config()
        w = cfg.web
        if not w.enabled:
            return None
        page = cls(config, snapshot, evidence)
        feed = PageFeed(state=page.state, latest=page.live.latest, roi=page.roi_of, save=page.save_frame,
                        evidence_path=lambda msg_id, line: evidence().path(msg_id, line),
                        evidence_why=lambda msg_id: evidence().why_path(msg_id),
                        device=cfg.device_id or "", refresh_ms=w.refresh_ms, frame_max_side_px=w.frame_max_side_px,
                        **({"trigger": trigger} if trigger is not None else {}),
                        **({"recipe": recipe} if recipe is not None else {}))
        token = web_token(w)
        page._app, page._token = create_app(feed, token), bool(token)
        page._serve(retry=False)
        return page

    def retry(self, now_mono: float) -> None:
        """At most every RETRY_S: the server again, where its port was taken (another program, or a daemon that
        was stopping)."""
        if self.server is None and self._app is not None and now_mono >= self._retry_at:
            self._retry_at = now_mono + RETRY_S
            self._serve(retry=True)

    def _serve(self, retry: bool) -> None:
        from daemon.web.server import WebServer

        host, port, threads = self._where
        try:
            self.server = WebServer(self._app, host, port, threads).start()
        except OSError as exc:
            log.log(logging.DEBUG if retry else logging.ERROR, "page on %s:%d not started: %s%s", host, port, exc,
                    "" if retry else f"; tried again every {RETRY_S:g} s")
            return
        log.info("page on http://%s:%d/%s", host, self.server.port, " (access token required)" if self._token else "")

    def stop(self) -> None:
        self._app = None   # stopped for good: not tried again
        if self.server is not None:
            self.server.stop()
            self.server = None

    def state(self) -> dict:
        from daemon.web.state import camera_config_view, page_state

        cfg, evidence = self._config(), self._evidence()
        cams = {c.name: camera_config_view(c) for c in cfg.cameras}
        views = {name: self.live.camera_view(name) for name in cams}
        return page_state(self._snapshot(), cams, views, evidence.snapshot(),
                          {"backend": cfg.backend, "precision": cfg.ocr.precision}, cfg.web.refresh_ms, evidence.crops)

    def roi_of(self, camera: str) -> tuple:
        return next((tuple(c.roi) for c in self._config().cameras if c.name == camera), ())

    def save_frame(self, camera: str) -> Optional[str]:
        """The save button: the camera's latest frame (ROI applied, nothing drawn) as a PNG; its file name."""
        from daemon.web.saved import save_frame

        latest = self.live.latest(camera)
        if latest is None:
            return None
        w = self._config().web
        return save_frame(w.saved_frames_dir, camera, latest.image, latest.captured_at, w.max_saved_frames).name
