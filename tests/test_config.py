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
    ({"ocr": {"rec_batch": 0}}, "ocr.rec_batch", "at least 1"),
    ({"ocr": {"use_angle_classifier": "yes"}}, "ocr.use_angle_classifier", "true or false"),
    ({"ocr": {"det_model": "/nonexistent/det.onnx"}}, "ocr.det_model", "/nonexistent/det.onnx"),
    ({"backend": "gpu"}, "backend", "'gpu' is not one of"),
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
