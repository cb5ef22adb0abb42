"""The config by section: one secret reader with one rule for empty values, keys given twice refused, every section
checked where it is built, the one table of sinks, and every command reporting a bad config in one line."""
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import config
from daemon.config import ConfigError, from_dict
from daemon.publish.sinks import sink_names

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "t0ken-of-twenty-chars"

# (the section's config with its secret named by an environment variable, the key that names it, the reader)
SECRETS = {
    "mqtt_password": ({"mqtt": {"username": "u", "password_env": "OCR_TEST_SECRET"}}, "mqtt.password",
                      lambda cfg: config.mqtt_password(cfg.mqtt)),
    "opcua_password": ({"opcua": {"enabled": True, "password_env": "OCR_TEST_SECRET"}}, "opcua.password",
                       lambda cfg: config.opcua_password(cfg.opcua)),
    "web_token": ({"web": {"token_env": "OCR_TEST_SECRET"}}, "web.token", lambda cfg: config.web_token(cfg.web)),
}


def _by_file(data: dict, path: Path) -> dict:
    section, values = next(iter(data.items()))
    values = {("token_file" if k == "token_env" else "password_file") if k.endswith("_env") else k: v
              for k, v in values.items()}
    return {section: {**values, next(k for k in values if k.endswith("_file")): str(path)}}


@pytest.mark.parametrize("name", sorted(SECRETS))
@pytest.mark.parametrize("value", ["", "   ", "\n", " \t\r\n"])
def test_an_empty_or_blank_secret_is_a_config_error_naming_its_key(name, value, tmp_path, monkeypatch):
    data, key, _ = SECRETS[name]
    monkeypatch.setenv("OCR_TEST_SECRET", value)
    with pytest.raises(ConfigError) as err:
        from_dict({"device_id": "dev", **data})
    assert err.value.key == f"{key}_env" and "is empty (or only whitespace) in the environment" in str(err.value)
    path = tmp_path / "secret"
    path.write_text(value)
    with pytest.raises(ConfigError) as err:
        from_dict({"device_id": "dev", **_by_file(data, path)})
    assert err.value.key == f"{key}_file" and str(err.value).endswith("is empty")


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_a_secret_is_its_text_stripped_from_the_environment_or_a_file(name, tmp_path, monkeypatch):
    data, key, read = SECRETS[name]
    monkeypatch.setenv("OCR_TEST_SECRET", f"  {TOKEN}\r\n")
    assert read(from_dict({"device_id": "dev", **data})) == TOKEN
    path = tmp_path / "secret"
    path.write_text(f"{TOKEN}\n")
    assert read(from_dict({"device_id": "dev", **_by_file(data, path)})) == TOKEN
    monkeypatch.delenv("OCR_TEST_SECRET")
    with pytest.raises(ConfigError) as err:
        from_dict({"device_id": "dev", **data})
    assert err.value.key == f"{key}_env" and "is not set in the environment" in str(err.value)


def test_a_secret_nobody_named_is_none():
    cfg = from_dict({"device_id": "dev"})
    assert config.mqtt_password(cfg.mqtt) is None and config.web_token(cfg.web) is None
    assert config.opcua_password(cfg.opcua) is None


@pytest.mark.parametrize("text, key, lines", [
    ("mqtt:\n  port: 1883\nweb:\n  port: 8089\nmqtt:\n  host: broker\n", "mqtt", "on lines 1 and 5"),
    ("mqtt:\n  port: 1883\n  host: a\n  port: 1884\n", "mqtt.port", "on lines 2 and 4"),
    ("cameras:\n  - name: a\n    kind: sample\n    name: b\n", "cameras[0].name", "on lines 2 and 4"),
    ("mqtt: {port: 1, port: 2}\n", "mqtt.port", "on line 1"),
])
def test_a_key_given_twice_in_one_mapping_is_refused_with_both_lines(tmp_path, text, key, lines):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert err.value.key == key and lines in str(err.value) and "given twice" in str(err.value)


def test_merge_keys_and_a_key_overriding_a_merged_one_are_not_duplicates(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("cameras:\n  - &cam {kind: sample, name: a, min_confidence: 0.7}\n"
                    "  - &fast {<<: *cam, name: b, max_fps: 2.0}\n"
                    "  - {<<: *cam, <<: *fast, name: c}\n")
    cfg = config.load(path)
    assert [(c.name, c.min_confidence, c.max_fps) for c in cfg.cameras] == [("a", 0.7, 0.0), ("b", 0.7, 2.0),
                                                                            ("c", 0.7, 2.0)]
    path.write_text("mqtt: {'yes': 1, yes: 2}\n")   # a string and a boolean: two keys (the first one unknown)
    with pytest.raises(ConfigError, match="unknown key"):
        config.load(path)


def test_a_loaded_config_knows_its_file_which_is_no_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("device_id: dev\n")
    cfg = config.load("c.yaml")
    assert cfg.source_path == str(tmp_path / "c.yaml")      # absolute: hints name it from anywhere
    assert from_dict({"device_id": "dev"}).source_path is None and cfg == from_dict({"device_id": "dev"})
    with pytest.raises(ConfigError, match="source_path: unknown key"):
        from_dict({"device_id": "dev", "source_path": "/x.yaml"})
    assert config.config_option(cfg.source_path) == f"--config {tmp_path / 'c.yaml'}"
    assert config.config_option(None) == "--config FILE"


def test_every_sections_defaults_pass_its_own_check():
    for f in dataclasses.fields(config.Config):
        section = getattr(config.Config(), f.name)
        for item in (section if isinstance(section, tuple) else (section,)):
            if hasattr(item, "check"):
                item.check(f.name)


def test_each_section_is_checked_where_it_is_built_with_its_key_path():
    with pytest.raises(ConfigError) as err:
        from_dict({"device_id": "dev", "cameras": [{"name": "a"}, {"name": "b", "max_fps": -1}]})
    assert err.value.key == "cameras[1].max_fps"
    with pytest.raises(ConfigError) as err:
        from_dict({"device_id": "dev", "mqtt": {"tls": {"insecure": True}}})
    assert str(err.value).startswith("mqtt.tls.insecure: True needs mqtt.tls.enabled: true")


def test_every_sink_in_the_table_is_a_section_that_turns_it_on(monkeypatch):
    monkeypatch.setenv("OCR_TEST_SECRET", TOKEN)
    for name in config.SINKS:
        assert isinstance(getattr(config.Config(), name).enabled, bool)
    on = from_dict({"device_id": "dev", "opcua": {"enabled": True, "password_env": "OCR_TEST_SECRET"},
                    "sparkplug": {"enabled": True}, "homeassistant": {"enabled": True}, "modbus": {"enabled": True},
                    "cameras": [{"name": "station", "mode": "triggered"}]})
    assert sink_names(on) == config.SINKS == config.enabled_sinks(on)


COMMANDS = {
    "run": ["run", "--config", "{path}"],
    "check-config": ["check-config", "{path}"],
    "once": ["once", "x.png", "--config", "{path}"],
    "bench": ["bench", "--images", ".", "--config", "{path}"],
    "calibrate": ["calibrate", "--images", ".", "--config", "{path}"],
    "build-engine": ["build-engine", "--config", "{path}"],
    "build-kernels": ["build-kernels", "--config", "{path}"],
    "doctor": ["doctor", "--config", "{path}"],
    "outbox": ["outbox", "dead-letters", "--config", "{path}"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_reports_a_bad_config_in_the_one_line_and_exits_2(tmp_path, command):
    path = tmp_path / "bad.yaml"
    path.write_text("mqtt:\n  port: 0\n")
    args = [a.format(path=path) for a in COMMANDS[command]]
    done = subprocess.run([sys.executable, "-m", "daemon", *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"{path}: invalid config: mqtt.port: 0 must be between 1 and 65535"]
