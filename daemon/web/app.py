"""The page's Flask app: routes, the access check and the response headers. Served by daemon/web/server.py.

Routes (all GET but one):
  /                                the page (templates/index.html, static/page.js polls the rest)
  /api/state                       JSON: per camera fps/drops/state, the latest frame's lines, readings, rejects;
                                   outbox depth, broker, backend and precision (daemon/web/state.py)
  /api/cameras/<camera>/frame.jpg  the camera's latest frame with what was read on it (daemon/web/draw.py),
                                   drawn once per new frame and only when asked for
  POST /api/cameras/<camera>/save  keeps the current frame as a PNG (the page's one write)
  POST /api/cameras/<camera>/trigger  starts a read cycle (JSON body: trigger_id, expected, recipe, fields):
                                   202 accepted, 409 missed (busy), 400 bad command, 404 not a triggered camera
  POST /api/cameras/<camera>/recipe   selects the active recipe (JSON body: {"recipe": name}): 200 selected,
                                   409 refused (unknown recipe; the old one stays), 400 bad command, 404 as above
  /evidence/<id>.jpg               a stored reading's frame; /evidence/<id>/line<k>.jpg its line k (daemon/evidence.py);
                                   /evidence/<id>.json why a failed result failed

Access: with a token configured (web.token_env / web.token_file; required off loopback by config), a request
needs ``Authorization: Bearer <token>`` or the cookie that ``/?token=<token>`` sets (HttpOnly, SameSite=Strict;
the redirect drops the token from the address bar). Without one (loopback only) the Host header must name a
loopback host, so a web site that rebinds its DNS name to 127.0.0.1 cannot read the page from a browser on
this machine. The save button's POST needs a custom header (no cross-site form can send it) and the same checks.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import quote

from flask import Flask, abort, jsonify, make_response, redirect, render_template, request, send_file

from daemon.web.draw import annotate, encode_jpeg

log = logging.getLogger(__name__)

COOKIE = "ocr_page"
SAVE_HEADER = "X-OCR-Page"          # the page's fetch() sends it; cross-site forms cannot
FRAME_JPEG_QUALITY = 80
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class PageFeed:
    """What the page reads, as callables the service hands over (the app never sees the service)."""
    state: Callable[[], dict]                        # the /api/state document
    latest: Callable[[str], object]                  # camera -> LiveFrame or None
    roi: Callable[[str], tuple]                      # camera -> its configured ROI
    save: Callable[[str], Optional[str]]             # camera -> saved file name, None when it has no frame yet
    evidence_path: Callable[[str, Optional[int]], object]   # (msg_id, line) -> Path or None
    evidence_why: Callable[[str], object] = lambda msg_id: None   # msg_id -> a fail's <id>.json Path or None
    # (camera, body) -> (outcome, JSON answer): a read-cycle trigger (daemon/readings/trigger_commands.py)
    trigger: Callable[[str, bytes], tuple[str, bytes]] = lambda camera, body: ("unknown", b"{}")
    # (camera, body) -> (outcome, JSON answer): a recipe selection (the same module)
    recipe: Callable[[str, bytes], tuple[str, bytes]] = lambda camera, body: ("unknown", b"{}")
    device: str = ""
    refresh_ms: int = 1000
    frame_max_side_px: int = 1280


def cookie_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the token itself is not sent with every request."""
    return hmac.new(token.encode(), b"ocr-daemon page cookie", hashlib.sha256).hexdigest()


def host_is_loopback(host_header: str) -> bool:
    """Whether a Host header ("127.0.0.1:8088", "localhost", "[::1]:8088") names this machine's loopback."""
    h = (host_header or "").strip().lower()
    if h.startswith("["):
        name = h[1:h.find("]")] if "]" in h else ""
    else:
        name = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    return name in ("localhost", "::1") or bool(re.fullmatch(r"127(\.\d{1,3}){3}", name))


def create_app(feed: PageFeed, token: Optional[str] = None) -> Flask:
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=4096)   # the page only POSTs an empty body
    cache_lock = threading.Lock()
    frame_cache: dict[str, tuple[int, bytes]] = {}   # camera -> (frame seq, JPEG): drawn once per frame
    expected_cookie = cookie_value(token) if token else None

    def authorized() -> bool:
        if token is None:
            return host_is_loopback(request.host)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), token.encode()):
            return True
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), expected_cookie.encode())

    @app.before_request
    def guard():
        if token is not None and request.path == "/" and "token" in request.args:
            given = request.args.get("token", "")
            if hmac.compare_digest(given.encode(), token.encode()):
                resp = redirect("/", code=303)
                resp.set_cookie(COOKIE, expected_cookie, httponly=True, samesite="Strict",
                                secure=request.is_secure, path="/")
                return resp
        if not authorized():
            if token is None:
                return _text(403, "forbidden: the page answers to a loopback host name only (127.0.0.1, localhost)\n")
            return _text(401, "access token required: open /?token=<token> once, or send Authorization: Bearer\n")
        if request.method == "POST" and request.headers.get(SAVE_HEADER) != "1":
            return _text(403, "forbidden: POST only from the page\n")
        return None

    @app.after_request
    def headers(resp):
        resp.headers["Content-Security-Policy"] = _CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.get("/")
    def index():
        return render_template("index.html", device=feed.device, refresh_ms=feed.refresh_ms)

    @app.get("/api/state")
    def state():
        return jsonify(feed.state())

    @app.get("/api/cameras/<camera>/frame.jpg")
    def frame(camera: str):
        latest = feed.latest(camera)
        if latest is None:
            abort(404)
        with cache_lock:
            cached = frame_cache.get(camera)
        if cached is None or cached[0] != latest.seq:
            drawn = annotate(latest.image, latest.lines, latest.accepted, latest.codes, feed.roi(camera),
                             feed.frame_max_side_px)
            cached = (latest.seq, encode_jpeg(drawn, FRAME_JPEG_QUALITY))
            with cache_lock:
                frame_cache[camera] = cached
        resp = make_response(cached[1])
        resp.headers["Content-Type"] = "image/jpeg"
        resp.headers["X-Frame-Seq"] = str(cached[0])
        return resp

    @app.post("/api/cameras/<camera>/save")
    def save(camera: str):
        name = feed.save(camera)
        if name is None:
            return jsonify({"error": f"no frame of camera {camera} yet"}), 404
        log.info("web: frame of %s saved as %s", camera, name)
        return jsonify({"file": name})

    @app.post("/api/cameras/<camera>/trigger")
    def trigger(camera: str):
        outcome, body = feed.trigger(camera, request.get_data(cache=False))
        return _json(body, {"accepted": 202, "missed": 409, "bad": 400, "unknown": 404}.get(outcome, 500))

    @app.post("/api/cameras/<camera>/recipe")
    def recipe(camera: str):
        outcome, body = feed.recipe(camera, request.get_data(cache=False))
        return _json(body, {"selected": 200, "refused": 409, "bad": 400, "unknown": 404}.get(outcome, 500))

    @app.get("/evidence/<msg_id>.jpg")
    def evidence_frame(msg_id: str):
        return _evidence(msg_id, None)

    @app.get("/evidence/<msg_id>/line<int:k>.jpg")
    def evidence_line(msg_id: str, k: int):
        return _evidence(msg_id, k)

    @app.get("/evidence/<msg_id>.json")
    def evidence_why(msg_id: str):
        return _evidence(msg_id, None, why=True)

    def _evidence(msg_id: str, line: Optional[int], why: bool = False):
        path = feed.evidence_why(msg_id) if why else feed.evidence_path(msg_id, line)
        if path is None:
            return _text(404, f"no {'fail summary' if why else 'evidence'} kept for {quote(msg_id)} "
                              "(a good read has none; dropped, or deleted by the size cap or TTL)\n")
        try:
            resp = send_file(path, mimetype="application/json" if why else "image/jpeg", max_age=3600)
        except FileNotFoundError:   # deleted by the cap between the look-up and the open
            return _text(404, "evidence deleted meanwhile\n")
        resp.headers["Cache-Control"] = "private, max-age=3600"   # a reading's evidence never changes
        return resp

    return app


def _json(body: bytes, code: int):
    resp = make_response(body, code)
    resp.headers["Content-Type"] = "application/json"
    return resp


def _text(code: int, body: str):
    resp = make_response(body, code)
    resp.headers["Content-Type"] = "text/plain; charset=utf-8"
    return resp
