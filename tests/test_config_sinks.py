"""The sink sections of config.yaml: off by default, which sinks the outbox owes rows to, and errors that name the
key and the value."""
import pytest

from daemon.config import ConfigError, from_dict
from daemon.publish.sinks import sink_names


def test_all_off_by_default_and_the_outbox_owes_rows_to_mqtt_alone():
    cfg = from_dict({"device_id": "dev"})
    assert not (cfg.opcua.enabled or cfg.sparkplug.enabled or cfg.homeassistant.enabled)
    assert not cfg.opcua.allow_anonymous and cfg.opcua.security_mode == "SignAndEncrypt"
    assert cfg.opcua.result_buffer == 32
    assert sink_names(cfg) == ("mqtt",)
    assert sink_names(from_dict({"device_id": "dev", "mqtt": {"enabled": False}})) == ("mqtt",)   # kept for later


def test_enabled_sinks_in_a_fixed_order(monkeypatch):
    monkeypatch.setenv("OPCUA_PW", "x" * 12)
    cfg = from_dict({"device_id": "dev", "homeassistant": {"enabled": True}, "sparkplug": {"enabled": True},
                     "opcua": {"enabled": True, "password_env": "OPCUA_PW"}, "state_dir": "/var/lib/ocr"})
    assert sink_names(cfg) == ("mqtt", "opcua", "sparkplug", "homeassistant")
    assert cfg.opcua.cert_file == "/var/lib/ocr/var/opcua/server-cert.der"   # under state_dir
    only = from_dict({"device_id": "dev", "mqtt": {"enabled": False}, "sparkplug": {"enabled": True}})
    assert sink_names(only) == ("sparkplug",)


@pytest.mark.parametrize("data, key, value", [
    ({"opcua": {"enabled": True}}, "opcua.password_env", "None"),
    ({"opcua": {"enabled": True, "password_env": "NOT_SET_ANYWHERE_42"}}, "opcua.password_env",
     "NOT_SET_ANYWHERE_42"),
    ({"opcua": {"enabled": True, "password_file": "/nonexistent/pw"}}, "opcua.password_file", "/nonexistent/pw"),
    ({"opcua": {"enabled": True, "port": 70000, "password_file": "/etc/hostname"}}, "opcua.port", "70000"),
    ({"opcua": {"security_mode": "None"}}, "opcua.security_mode", "None"),
    ({"opcua": {"enabled": True, "result_buffer": 0, "password_file": "/etc/hostname"}}, "opcua.result_buffer", "0"),
    ({"sparkplug": {"enabled": True, "group_id": "a/b"}}, "sparkplug.group_id", "a/b"),
    ({"sparkplug": {"qos": 2}}, "sparkplug.qos", "2"),
    ({"homeassistant": {"enabled": True, "discovery_prefix": "ha/#"}}, "homeassistant.discovery_prefix", "ha/#"),
    ({"homeassistant": {"enabled": True}, "mqtt": {"enabled": False}}, "homeassistant.enabled", "True"),
])
def test_bad_values_name_their_key_and_value(data, key, value):
    with pytest.raises(ConfigError) as err:
        from_dict({"device_id": "dev", **data})
    assert err.value.key == key and value in str(err.value)


def test_a_short_opcua_password_is_refused_naming_where_it_comes_from(monkeypatch):
    """The server is on the plant network and answers a login guess in about 0.1 s (found from outside: 100 guesses
    in 9.7 s, and a one-character password passed check-config)."""
    monkeypatch.setenv("OPCUA_PW", "x" * 11)
    with pytest.raises(ConfigError) as err:
        from_dict({"device_id": "dev", "opcua": {"enabled": True, "password_env": "OPCUA_PW"}})
    assert err.value.key == "opcua.password_env" and "shorter than 12 characters" in str(err.value)
    assert "xxxxxxxxxxx" not in str(err.value)   # the secret itself is never shown
    monkeypatch.setenv("OPCUA_PW", "x" * 12)
    assert from_dict({"device_id": "dev", "opcua": {"enabled": True, "password_env": "OPCUA_PW"}}).opcua.enabled
