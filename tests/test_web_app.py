"""The page's routes and access rules through Flask's test client and the daemon's real HTTP server: loopback Host check
without a token, the token (Bearer or the cookie /?token= sets) with one, the save button's POST, evidence by id
only; the polled JSON is an allow-list that carries no password; web config errors name the key and value."""
import json
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from daemon.config import CameraConfig, ConfigError, from_dict
from daemon.ocr.results import TextLine
from daemon.web.app import COOKIE, PageFeed, cookie_value, create_app, host_is_loopback
from daemon.web.live import LiveView
from daemon.web.server import WebServer
from daemon.web.state import camera_config_view, page_state
from service_support import http_get

TOKEN = "t0ken-for-the-page-0123456789"
LINE = TextLine("SF7300007919", 0.97, ((10.0, 10.0), (200.0, 10.0), (200.0, 40.0), (10.0, 40.0)))


def feed(tmp_path, live: LiveView, saved: list) -> PageFeed:
    ev = tmp_path / "ev.jpg"
    ev.write_bytes(b"\xff\xd8 jpeg")
    why = tmp_path / "ev.json"
    why.write_text('{"verdict": "fail"}')

    def save(camera):
        if live.latest(camera) is None:
            return None
        saved.append(camera)
        return f"{camera}-x.png"

    return PageFeed(state=lambda: {"cameras": {"dock": live.camera_view("dock")}}, latest=live.latest,
                    roi=lambda cam: (), save=save,
                    evidence_path=lambda msg_id, line: ev if (msg_id, line) == ("box1:dock:1:5", None) else None,
                    evidence_why=lambda msg_id: why if msg_id == "box1:dock:1:5" else None,
                    device="box1")


@pytest.fixture
def live():
    v = LiveView()
    v.frame("dock", np.full((120, 240, 3), 255, np.uint8), 1.0, [LINE], [LINE])
    return v


def test_without_a_token_only_a_loopback_host_header_is_served(tmp_path, live):
    client = create_app(feed(tmp_path, live, [])).test_client()
    r = client.get("/", headers={"Host": "127.0.0.1:8088"})
    assert r.status_code == 200 and b"ocr-daemon" in r.data
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert client.get("/api/state", headers={"Host": "localhost:8088"}).json["cameras"]["dock"]["frame_seq"] == 1
    # a site whose DNS name was rebound to 127.0.0.1 arrives with its own Host header
    assert client.get("/api/state", headers={"Host": "evil.example:8088"}).status_code == 403
    assert [host_is_loopback(h) for h in ("[::1]:8088", "127.0.0.2", "localhost", "10.0.0.5:8088", "")] == [
        True, True, True, False, False]


def test_with_a_token_bearer_or_the_cookie_from_the_token_link(tmp_path, live):
    client = create_app(feed(tmp_path, live, []), TOKEN).test_client()
    assert client.get("/api/state").status_code == 401
    assert client.get("/api/state", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/state", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    r = client.get(f"/?token={TOKEN}")
    assert r.status_code == 303 and r.headers["Location"] == "/"          # the token leaves the address bar
    cookie = r.headers["Set-Cookie"]
    assert f"{COOKIE}={cookie_value(TOKEN)}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    assert client.get("/api/state").status_code == 200                   # the test client kept the cookie
    fresh = create_app(feed(tmp_path, live, []), TOKEN).test_client()
    assert fresh.get("/?token=wrong").status_code == 401 and "Set-Cookie" not in fresh.get("/?token=wrong").headers


def test_the_frame_is_drawn_once_per_new_frame(tmp_path, live):
    client = create_app(feed(tmp_path, live, [])).test_client()
    r = client.get("/api/cameras/dock/frame.jpg")
    assert r.status_code == 200 and r.data[:2] == b"\xff\xd8" and r.headers["X-Frame-Seq"] == "1"
    assert client.get("/api/cameras/dock/frame.jpg").data == r.data
    live.frame("dock", np.zeros((120, 240, 3), np.uint8), 2.0, [], [])
    assert client.get("/api/cameras/dock/frame.jpg").headers["X-Frame-Seq"] == "2"
    assert client.get("/api/cameras/nope/frame.jpg").status_code == 404


def test_save_needs_the_pages_header(tmp_path, live):
    saved = []
    client = create_app(feed(tmp_path, live, saved)).test_client()
    assert client.post("/api/cameras/dock/save").status_code == 403      # a cross-site form cannot add it
    r = client.post("/api/cameras/dock/save", headers={"X-OCR-Page": "1"})
    assert r.status_code == 200 and r.json == {"file": "dock-x.png"} and saved == ["dock"]
    assert client.post("/api/cameras/nope/save", headers={"X-OCR-Page": "1"}).status_code == 404
    assert client.get("/api/cameras/dock/save").status_code == 405        # read-only otherwise


def test_evidence_by_message_id_only(tmp_path, live):
    client = create_app(feed(tmp_path, live, [])).test_client()
    r = client.get("/evidence/box1%3Adock%3A1%3A5.jpg")
    assert r.status_code == 200 and r.mimetype == "image/jpeg" and r.data.startswith(b"\xff\xd8")
    assert client.get("/evidence/box1:dock:1:5.jpg").status_code == 200
    assert client.get("/evidence/box1:dock:2:5.jpg").status_code == 404
    assert client.get("/evidence/..%2F..%2Fetc%2Fpasswd.jpg").status_code == 404
    r = client.get("/evidence/box1%3Adock%3A1%3A5.json")                 # why it failed
    assert r.status_code == 200 and r.mimetype == "application/json" and r.json == {"verdict": "fail"}
    assert client.get("/evidence/box1:dock:2:5.json").status_code == 404


def test_page_state_is_an_allow_list_without_secrets():
    snapshot = {"device": "box1", "uptime_s": 3.0,
                "backend": {"backend": "onnxruntime", "precision": "fp32", "category": "tensorrt_unavailable",
                            "reason": "auto: TensorRT is not importable", "degraded": True},
                "cameras": {"gate": {"fps": 2.0, "frames": 9, "dropped": 1, "state": "connecting", "stored": 3,
                                     "rejected": {"duplicate": 4}, "secret_field": "x"}},
                "outbox": {"rows": 5, "bytes": 900, "dropped_oldest": 0},
                "mqtt": {"enabled": True, "connected": False, "password": "hunter2-mqtt"},
                "delivery": {"last_error": "connect to mqtt://user:hunter2-mqtt@broker failed"},
                "health": {"healthy": True, "reasons": []}}
    cam = CameraConfig(name="gate", kind="rtsp", uri="rtsp://admin:Rtsp-S3cret@10.0.0.9/stream", roi=(0, 10, 640, 400))
    state = page_state(snapshot, {"gate": camera_config_view(cam)}, {}, {"enabled": True, "readings": 2},
                       {"backend": "auto", "precision": "fp32"}, 1000)
    text = json.dumps(state)
    assert "hunter2" not in text and "Rtsp-S3cret" not in text and "secret_field" not in text
    assert state["cameras"]["gate"]["source"] == "rtsp://admin:***@10.0.0.9/stream"
    assert state["backend"]["reason"] == "auto: TensorRT is not importable"
    assert state["outbox"] == {"rows": 5, "bytes": 900} and state["broker"] == {"enabled": True, "connected": False}
    snapshot["backend"]["category"] = "configured"
    assert page_state(snapshot, {}, {}, None, {}, 1000)["backend"]["reason"] is None


def test_the_page_server_serves_and_stops_with_its_threads(tmp_path, live):
    before = threading.active_count()
    server = WebServer(create_app(feed(tmp_path, live, [])), "127.0.0.1", 0, threads=2).start()
    try:
        status, body = http_get(f"http://127.0.0.1:{server.port}/api/state")
        assert status == 200 and json.loads(body)["cameras"]["dock"]["frame_seq"] == 1
        assert threading.active_count() <= before + 3                     # 2 workers + the loop
    finally:
        server.stop()
    assert threading.active_count() == before
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=2)


@pytest.mark.parametrize("web, key", [
    ({"host": "0.0.0.0"}, "web.host"),
    ({"port": 70000}, "web.port"),
    ({"token_env": "OCR_TEST_NO_SUCH_VAR"}, "web.token_env"),
    ({"refresh_ms": 5}, "web.refresh_ms"),
    ({"recent_readings": 0}, "web.recent_readings"),
])
def test_web_config_errors_name_the_key_and_value(web, key):
    with pytest.raises(ConfigError) as e:
        from_dict({"device_id": "box1", "web": web})
    assert e.value.key == key and repr(next(iter(web.values()))) in str(e.value)


def test_a_short_token_is_refused_and_a_good_one_opens_other_addresses(tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_TEST_PAGE_TOKEN", "short")
    with pytest.raises(ConfigError) as e:
        from_dict({"device_id": "box1", "web": {"host": "0.0.0.0", "token_env": "OCR_TEST_PAGE_TOKEN"}})
    assert e.value.key == "web.token_env" and "shorter than 16" in str(e.value)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    cfg = from_dict({"device_id": "box1", "web": {"host": "0.0.0.0", "token_file": str(token)}})
    from daemon.config import web_token
    assert web_token(cfg.web) == TOKEN


def test_the_page_script_writes_text_never_html():
    """OCR reads whatever is printed on a label, "<img onerror=...>" too: the page sets textContent only."""
    from daemon.web import app as app_mod
    script = (Path(app_mod.__file__).parent / "static" / "page.js").read_text()
    assert "textContent" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


def test_trigger_and_recipe_need_the_token_and_the_page_header_and_answer_with_the_board(tmp_path, live):
    import dataclasses

    from daemon.readings.trigger_commands import offer_command, select_command
    from daemon.readings.triggers import TriggerBoard

    boards = {"dock": TriggerBoard("dock", ("cans", "jars"), "cans")}
    app_feed = dataclasses.replace(feed(tmp_path, live, []),
                                   trigger=lambda cam, body: offer_command(boards, cam, body, "http"),
                                   recipe=lambda cam, body: select_command(boards, cam, body, "http"))
    client = create_app(app_feed, TOKEN).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    page = {**auth, "X-OCR-Page": "1"}
    for path, body in (("/api/cameras/dock/trigger", b"{}"), ("/api/cameras/dock/recipe", b'"jars"')):
        assert client.post(path, data=body).status_code == 401                  # no token
        assert client.post(path, data=body, headers=auth).status_code == 403    # no page header (a cross-site form)
    assert boards["dock"].state().counters.triggers == 0 and boards["dock"].state().recipe == "cans"
    r = client.post("/api/cameras/dock/recipe", data=b'{"recipe": "jars"}', headers=page)
    assert r.status_code == 200 and r.json == {"camera": "dock", "recipe": "jars", "accepted": True,
                                               "reason": "selected"}
    assert client.post("/api/cameras/dock/recipe", data=b'{"recipe": "x"}', headers=page).status_code == 409
    assert client.post("/api/cameras/dock/recipe", data=b"not json", headers=page).status_code == 400
    assert client.post("/api/cameras/gate/recipe", data=b'"jars"', headers=page).status_code == 404
    r = client.post("/api/cameras/dock/trigger", data=b'{"trigger_id": "p1"}', headers=page)
    assert r.status_code == 202 and r.json["accepted"] is True
    assert client.post("/api/cameras/dock/trigger", data=b"{}", headers=page).status_code == 409   # one waits
    assert boards["dock"].state().recipe == "jars" and boards["dock"].state().counters.missed == 1
