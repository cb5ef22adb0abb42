"""config.yaml: defaults, and errors that name the key path and the bad value."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from daemon import config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_yaml_is_valid_and_matches_the_defaults_it_documents():
    cfg = config.load(ROOT / "config.yaml")
    defaults = config.from_dict({})
    assert cfg.ocr == defaults.ocr
    assert cfg.outbox.full_policy == defaults.outbox.full_policy


@pytest.mark.parametrize("data,key,fragment", [
    ({"colour": 1}, "colour", "unknown key"),
    ({"ocr": {"det_input_size": [640, "x"]}}, "ocr.det_input_size[1]", "integer"),
    ({"ocr": {"det_input_size": [650, 640]}}, "ocr.det_input_size[0]", "multiple of 32"),
    ({"ocr": {"rec_batch": 0}}, "ocr.rec_batch", "1 to 256"),
    ({"ocr": {"use_angle_classifier": "yes"}}, "ocr.use_angle_classifier", "true or false"),
    ({"ocr": {"det_model": "/nonexistent/det.onnx"}}, "ocr.det_model", "/nonexistent/det.onnx"),
    ({"backend": "gpu"}, "backend", "'gpu' is not one of"),
    ({"ocr": {"tiles": True}}, "ocr.tiles", "put the word in quotes"),   # YAML's bare `on`
    ({"cameras": [{"name": "a b", "kind": "file", "uri": "x.mp4"}]}, "cameras[0].name", "'a b'"),
    ({"cameras": [{"name": "a", "kind": "file"}]}, "cameras[0].uri", "must be set"),
    ({"cameras": [{"name": "a", "kind": "sample", "roi": [1, 2, 3]}]}, "cameras[0].roi", "[1, 2, 3]"),
    ({"cameras": [{"name": "a", "kind": "sample", "accept_patterns": ["(unclosed"]}]},
     "cameras[0].accept_patterns[0]", "not a valid regex"),
    ({"cameras": [{"name": "a", "kind": "sample"}, {"name": "a", "kind": "sample"}]}, "cameras[1].name", "another"),
    ({"mqtt": {"topic_prefix": "plant/#"}}, "mqtt.topic_prefix", "'plant/#'"),
    ({"mqtt": {"port": 70000}}, "mqtt.port", "70000"),
    ({"mqtt": {"tls": {"enabled": True, "ca_file": "/nonexistent/ca.pem"}}}, "mqtt.tls.ca_file", "cannot be read"),
    ({"mqtt": {"password_env": "OCR_TEST_SURELY_UNSET_VAR"}}, "mqtt.password_env", "not set"),
    ({"outbox": {"full_policy": "explode"}}, "outbox.full_policy", "'explode'"),
    ({"mqtt": {"tls": {"enabld": True}}}, "mqtt.tls.enabld", "unknown key"),
    ({"state_dir": "var/lib"}, "state_dir", "'var/lib' must be an absolute path"),
    ({"state_dir": ["/var/lib"]}, "state_dir", "expected a string"),
    # issue 9, item 12: values check-config used to accept and the daemon could not use
    ({"mqtt": {"keepalive_s": 100000}}, "mqtt.keepalive_s", "100000 must be between 5 and 65535"),
    ({"mqtt": {"keepalive_s": 65536}}, "mqtt.keepalive_s", "65536"),
    ({"mqtt": {"max_inflight": 65536}}, "mqtt.max_inflight", "65536 must be between 1 and 16382"),
    ({"mqtt": {"max_inflight": 16383}}, "mqtt.max_inflight", "16383"),
    ({"mqtt": {"max_inflight": 0}}, "mqtt.max_inflight", "0 must be between 1"),
    ({"cameras": [{"name": "dock\n", "kind": "sample"}]}, "cameras[0].name", "'dock\\n'"),
    ({"cameras": [{"name": ".", "kind": "sample"}]}, "cameras[0].name", "not '.' or '..'"),
    ({"cameras": [{"name": "..", "kind": "sample"}]}, "cameras[0].name", "'..'"),
    ({"device_id": "box\n"}, "device_id", "'box\\n'"),
    ({"device_id": ".."}, "device_id", "'..'"),
    ({"mqtt": {"tls": {"insecure": True}}}, "mqtt.tls.insecure", "True needs mqtt.tls.enabled"),
    ({"service": {"max_undelivered_age_s": 0}}, "service.max_undelivered_age_s", "must be positive"),
    # issue 11, 4: consensus keys; a folder keeps one reading per file
    ({"cameras": [{"name": "a", "kind": "folder", "uri": "/srv/scans", "publish_mode": "consensus"}]},
     "cameras[0].publish_mode", "not available for kind folder"),
    ({"cameras": [{"name": "a", "kind": "sample", "publish_mode": "vote"}]}, "cameras[0].publish_mode", "'vote'"),
    ({"cameras": [{"name": "a", "kind": "sample", "max_wait_s": 0}]}, "cameras[0].max_wait_s", "must be positive"),
    ({"cameras": [{"name": "a", "kind": "sample", "leave_after_frames": 0}]}, "cameras[0].leave_after_frames",
     "at least 1"),
    ({"ocr": {"cpu_rec_batch": 2}}, "ocr.cpu_rec_batch", "more than ocr.rec_tail_batch (2)"),
    ({"ocr": {"cpu_rec_batch": -1}}, "ocr.cpu_rec_batch", "must be 0 (automatic)"),
])
def test_invalid_values_name_the_key_path_and_value(data, key, fragment):
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(data)
    assert err.value.key == key
    assert fragment in str(err.value)


def test_yaml_syntax_error_is_a_config_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("ocr: [unclosed\n")
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        config.load(p)


def test_password_comes_from_env_or_file_only(tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_TEST_PW", "s3cret")
    cfg = config.from_dict({"mqtt": {"username": "u", "password_env": "OCR_TEST_PW"}})
    assert config.mqtt_password(cfg.mqtt) == "s3cret"
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    cfg = config.from_dict({"mqtt": {"password_file": str(pw)}})
    assert config.mqtt_password(cfg.mqtt) == "from-file"


def test_check_config_command_exits_2_with_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"ocr": {"rec_width": "wide"}}))
    proc = subprocess.run([sys.executable, "-m", "daemon", "check-config", str(p)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "ocr.rec_width" in proc.stderr and "'wide'" in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "daemon", "check-config", str(ROOT / "config.yaml")],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr


def test_relative_state_paths_resolve_against_state_dir():
    cfg = config.from_dict({"state_dir": "/var/lib/ocr-daemon", "outbox": {"path": "var/outbox.sqlite3"},
                            "engines": {"dir": "engines", "timing_cache": "engines/timing.cache"}})
    assert cfg.outbox.path == "/var/lib/ocr-daemon/var/outbox.sqlite3"
    assert cfg.engines.dir == "/var/lib/ocr-daemon/engines"
    assert cfg.engines.timing_cache == "/var/lib/ocr-daemon/engines/timing.cache"


def test_absolute_state_paths_are_kept_and_a_null_timing_cache_stays_null():
    cfg = config.from_dict({"state_dir": "/var/lib/ocr-daemon", "outbox": {"path": "/srv/outbox.sqlite3"},
                            "engines": {"dir": "/opt/engines", "timing_cache": None}})
    assert cfg.outbox.path == "/srv/outbox.sqlite3"
    assert cfg.engines.dir == "/opt/engines"
    assert cfg.engines.timing_cache is None


def test_null_state_dir_leaves_paths_relative_to_the_working_directory():
    cfg = config.from_dict({})
    assert cfg.state_dir is None
    assert (cfg.outbox.path, cfg.engines.dir, cfg.engines.timing_cache) == (
        "var/outbox.sqlite3", "engines", "engines/timing.cache")
    assert config.resolve_state_paths(cfg) is cfg


def test_load_applies_state_dir_from_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state")}))
    cfg = config.load(p)
    assert cfg.engines.dir == str(tmp_path / "state" / "engines")
    assert cfg.outbox.path == str(tmp_path / "state" / "var" / "outbox.sqlite3")


def test_check_config_names_a_relative_state_dir(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("state_dir: var/lib/ocr-daemon\n")
    proc = subprocess.run([sys.executable, "-m", "daemon", "check-config", str(p)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "state_dir: 'var/lib/ocr-daemon' must be an absolute path" in proc.stderr


def test_max_inflight_limit_leaves_sqlite_parameters_for_every_camera():
    # pending() binds up to 2 x max_inflight ids, one per backing-off camera and the LIMIT.
    for cameras in (1, 2, 50):
        limit = config.max_inflight_limit(cameras)
        assert 2 * limit + cameras + 1 <= config.SQLITE_MAX_VARIABLES
        assert 2 * (limit + 1) + cameras + 1 > config.SQLITE_MAX_VARIABLES
    cfg = config.from_dict({"mqtt": {"max_inflight": config.max_inflight_limit(1)}})
    assert cfg.mqtt.max_inflight == 16382


def test_outbox_query_with_max_inflight_rows_excluded_runs_on_real_sqlite(tmp_path):
    """The bound is the real one: pending() with 2 x max_inflight excluded ids and a camera excluded."""
    from daemon.publish.outbox import Outbox

    limit = config.max_inflight_limit(1)
    ob = Outbox(config.OutboxConfig(path=str(tmp_path / "o.sqlite3")))
    try:
        ob.put("cam", "t", "m1", b"x")
        assert ob.pending(limit, exclude_ids=range(10**6, 10**6 + 2 * limit), exclude_cameras=["other"])
    finally:
        ob.close()


def test_password_without_tls_is_a_warning_naming_the_key(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OCR_TEST_PW", "s3cret")
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"mqtt": {"username": "u", "password_env": "OCR_TEST_PW"}}))
    with caplog.at_level("WARNING", logger="daemon.config"):
        cfg = config.load(p)
    assert cfg.mqtt.password_env == "OCR_TEST_PW"   # accepted
    [record] = [r for r in caplog.records if r.name == "daemon.config"]
    assert record.levelname == "WARNING" and "mqtt.password_env" in record.getMessage()
    assert "s3cret" not in record.getMessage()
    tls = config.from_dict({"mqtt": {"password_env": "OCR_TEST_PW", "tls": {"enabled": True}}})
    assert config.config_warnings(tls) == []



def test_a_drain_that_leaves_systemd_no_time_to_stop_is_a_warning_naming_both_settings(tmp_path, caplog):
    # TimeoutStopSec=30 in the unit; a stop takes the drain and a few seconds more, then SIGKILL.
    assert config.config_warnings(config.from_dict({"service": {"drain_timeout_s": 25}})) == []
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"service": {"drain_timeout_s": 28}}))
    with caplog.at_level("WARNING", logger="daemon.config"):
        assert config.load(p).service.drain_timeout_s == 28   # accepted
    [record] = [r for r in caplog.records if r.name == "daemon.config"]
    assert record.levelname == "WARNING"
    assert "service.drain_timeout_s" in record.getMessage() and "TimeoutStopSec=30" in record.getMessage()


MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4\n"


def test_default_device_id_comes_from_the_machine_id():
    # The app-specific id of systemd-id128(1): `systemd-id128 machine-id --app-specific=d4fe280a...` on the
    # machine whose id is MACHINE_ID printed d311664b26fb44b7a19d71c750b92522.
    assert config.machine_device_id(MACHINE_ID, "jetson") == "ocr-d311664b"
    assert config.machine_device_id(MACHINE_ID.upper().strip(), "other") == "ocr-d311664b"   # stable, host-independent
    assert config.machine_device_id("0" * 32 + "\n", "jetson") == "jetson"      # not a real id
    assert config.machine_device_id("uninitialized\n", "jetson") == "jetson"    # first boot image
    assert config.machine_device_id(None, "dock-7.plant.example") == "dock-7"
    assert config.machine_device_id(None, "weird host!") == "weird-host-"
    assert config.machine_device_id(None, "") == "ocr-edge"


def test_null_device_id_is_resolved_and_a_configured_one_is_kept():
    cfg = config.resolve_device_id(config.build(config.Config, {}, ""), MACHINE_ID, "jetson")
    assert cfg.device_id == "ocr-d311664b"
    kept = config.build(config.Config, {"device_id": "dock-3"}, "")
    assert config.resolve_device_id(kept, MACHINE_ID, "jetson") is kept
    loaded = config.from_dict({})   # this machine's own id: valid, and the same on every load
    assert loaded.device_id == config.from_dict({}).device_id
    assert config.valid_name(loaded.device_id)


def test_publish_mode_defaults_to_consensus_for_live_cameras_and_first_for_files_folders_and_samples():
    kinds = {"v4l2": "/dev/video0", "rtsp": "rtsp://cam/s", "gstreamer": "videotestsrc ! appsink",
             "file": "clip.mp4", "folder": "/srv/scans", "sample": ""}
    cfg = config.from_dict({"cameras": [{"name": k, "kind": k, "uri": u} for k, u in kinds.items()]})
    assert {c.name: config.publish_mode(c) for c in cfg.cameras} == {
        "v4l2": "consensus", "rtsp": "consensus", "gstreamer": "consensus",
        "file": "first", "folder": "first", "sample": "first"}
    forced = config.from_dict({"cameras": [{"name": "a", "kind": "rtsp", "uri": "rtsp://x", "publish_mode": "first"},
                                           {"name": "b", "kind": "sample", "publish_mode": "consensus"}]})
    assert [config.publish_mode(c) for c in forced.cameras] == ["first", "consensus"]
