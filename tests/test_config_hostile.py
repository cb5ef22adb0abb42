"""Every bad config ends in exit 2 with one line naming the key, within seconds, in bounded memory, whatever the
bytes (issue 28 items 5 and 6): the cases found from outside, each as a real file through `check-config` and
`run --config` as processes under an address-space limit, and the checks behind them through config.load."""
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import config
from daemon.config import ConfigError, MqttConfig

ROOT = Path(__file__).resolve().parents[1]
ADDRESS_SPACE_BYTES = 1536 * 1024 * 1024   # a billion laughs expanded or /dev/zero read whole would pass this
HANG_S = 30                                 # a hang detector, not a timing: each run takes about a second
LONGEST_LINE = 1400                         # the message's cap, the log prefix and the file's path


def _bounded():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))


def _daemon(*args, cwd):
    return subprocess.run([sys.executable, "-m", "daemon", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=HANG_S, preexec_fn=_bounded, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _laughs(levels: int = 10) -> str:
    """The "billion laughs": ten aliases of the level below at each of ten levels, 10**10 strings expanded."""
    lines = ["mqtt:", "  topic_prefix:"]
    for i in range(levels):
        items = ", ".join(['"lol"' if i == 0 else f"*l{i - 1}"] * 10)
        lines.append(f"    - &l{i} [{items}]")
    return "\n".join(lines) + "\n"


def _fifo(tmp_path: Path) -> str:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return str(path)


# name -> (the file's bytes, given tmp_path; what its one line must name)
FOUND = {
    "billion_laughs": (lambda tmp: _laughs().encode(), "mqtt.topic_prefix"),
    "utf16_with_bom": (lambda tmp: "mqtt:\n  port: 1883\n".encode("utf-16"), "UTF-16"),
    "utf16_without_bom": (lambda tmp: "mqtt:\n  port: 1883\n".encode("utf-16-le"), "U+0000"),
    "latin1": (lambda tmp: "mqtt:\n  host: café\n".encode("latin-1"), "not UTF-8"),
    "deep_nesting": (lambda tmp: ("mqtt:\n  host: " + "[" * 200_000 + "]" * 200_000 + "\n").encode(), "mqtt.host"),
    "int_over_4300_digits": (lambda tmp: ("mqtt:\n  port: " + "7" * 5000 + "\n").encode(), "mqtt.port"),
    "regex_repeat_overflow": (lambda tmp: b"cameras:\n  - name: a\n    accept_patterns: ['a{99999999999}']\n",
                              "cameras[0].accept_patterns[0]"),
    "ten_mb_value": (lambda tmp: ("mqtt:\n  host: " + "h" * 10_000_000 + "\n").encode(), "more than 1048576"),
    "long_topic_prefix": (lambda tmp: ("mqtt:\n  topic_prefix: " + "t" * 70_000 + "\n").encode(),
                          "mqtt.topic_prefix"),
    "client_id_65536": (lambda tmp: ("mqtt:\n  client_id: " + "c" * 65_536 + "\n").encode(), "mqtt.client_id"),
    "password_file_dev_zero": (lambda tmp: b"mqtt:\n  username: ocr\n  password_file: /dev/zero\n",
                               "mqtt.password_file"),
    "password_file_fifo": (lambda tmp: f"mqtt:\n  username: ocr\n  password_file: {_fifo(tmp)}\n".encode(),
                           "mqtt.password_file"),
}


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("case", sorted(FOUND))
def test_found_case_exits_2_with_one_line_naming_the_key(tmp_path, case, command):
    make, named = FOUND[case]
    path = tmp_path / "config.yaml"
    path.write_bytes(make(tmp_path))
    args = ["check-config", str(path)] if command == "check-config" else ["run", "--config", str(path)]
    done = _daemon(*args, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert len(lines) == 1, done.stderr[-2000:]
    assert named in lines[0] and str(path) in lines[0]
    assert len(lines[0]) < LONGEST_LINE


def test_doctor_takes_the_same_path_and_exits_2(tmp_path):
    for content in (_laughs(), "mqtt:\n  password_file: /dev/zero\n"):
        path = tmp_path / "config.yaml"
        path.write_text(content)
        done = _daemon("doctor", "--config", str(path), cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "mqtt." in done.stderr


def test_config_path_that_is_a_fifo_or_a_device_is_refused_unread(tmp_path):
    for path in (_fifo(tmp_path), "/dev/zero", str(tmp_path)):
        done = _daemon("check-config", path, cwd=tmp_path)
        assert done.returncode == 2 and "is not a regular file" in done.stderr, done.stderr


# ------------------------------------------------------------ the checks behind them, through config.load

def _load_error(tmp_path: Path, content: str | bytes) -> ConfigError:
    path = tmp_path / "c.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert "\n" not in message and len(message) <= config.MAX_MESSAGE_CHARS + 30
    return err.value


@pytest.mark.parametrize("content, key, fragment", [
    # YAML: anchors, nesting, numbers, values PyYAML cannot build
    ("mqtt: &a\n  tls: *a\n", "mqtt.tls", "alias *a refers to a collection it is in"),
    ("mqtt:\n  port: *nowhere\n", "mqtt.port", "found undefined alias"),
    ("mqtt:\n  host: 2024-13-45\n", "mqtt.host", "line 2, column 9"),
    ("mqtt:\n  host: !!timestamp garbage\n", "mqtt.host", "cannot read timestamp 'garbage'"),
    ("mqtt:\n  port: 0x" + "f" * 100_000 + "\n", "mqtt.port", "a number of 100002 characters"),
    ("mqtt:\n  port: [1\n  host: x\n", "mqtt.port[1]", "line 3, column 7: not valid YAML"),
    ("mqtt:\n  host: a\x01b\n", "", "line 2, column 10: character U+0001 is not allowed"),
    ("a: 1\n---\nb: 2\n", "", "expected a single document"),
    ("cameras:\n" + "".join(f"  - {{name: c{i}, kind: sample}}\n" for i in range(4000)), "cameras[",
     "more than 10000 keys and values"),
    ('mqtt:\n  "a\\nb' + "c" * 500 + '": 1\n', "mqtt.'a\\nbccc", "(503 characters): unknown key"),
    ("service:\n  drain_timeout_s: .inf\n", "service.drain_timeout_s", "expected a finite number"),
    ("service:\n  drain_timeout_s: 1.0e+300\n", "service.drain_timeout_s", "longer than 1000000000 s"),
    ("service:\n  drain_timeout_s: 1e300\n", "service.drain_timeout_s", "write 1.0e+3"),
    ("outbox:\n  max_rows: 99999999999999999999\n", "outbox.max_rows", "out of range"),
    ("sparkplug:\n  qos: true\n", "sparkplug.qos", "True is not one of 0, 1"),
    # MQTT: what a broker or paho cannot carry
    ('mqtt:\n  client_id: "a\\x1bb"\n', "mqtt.client_id", "U+001B at character 2, which MQTT brokers refuse"),
    ('mqtt:\n  username: "u\\u0085"\n', "mqtt.username", "U+0085"),
    ("mqtt:\n  topic_prefix: $SYS/ocr\n", "mqtt.topic_prefix", "leading '$'"),
    ("mqtt:\n  topic_prefix: plant/+/ocr\n", "mqtt.topic_prefix", "no '#', '+'"),
    # 65520 bytes: a string MQTT takes, but not with /d/sample/review after it
    ("device_id: d\nmqtt:\n  topic_prefix: " + "é" * 32_760 + "\n", "mqtt.topic_prefix", "makes topics of 65544"),   # the longest: {prefix}/d/sample/trigger/answer
    ("device_id: d\nhomeassistant:\n  enabled: true\n  discovery_prefix: " + "p" * 65_520 + "\n",
     "homeassistant.discovery_prefix", "makes topics of 65543 bytes"),
    ("sparkplug:\n  client_id: " + "s" * 70_000 + "\n", "sparkplug.client_id", "MQTT strings end at 65535"),
    ("mqtt:\n  host: " + "h" * 300 + "\n", "mqtt.host", "is not an IP address or a host name"),
    ("mqtt:\n  host: 'broker .plant'\n", "mqtt.host", "is not an IP address or a host name"),
    ("mqtt:\n  password_env: 'MY-PASSWORD'\n", "mqtt.password_env", "is not an environment variable name"),
    ("outbox:\n  path: /tmp\n", "outbox.path", "is not a regular file"),
    ("outbox:\n  path: /dev/null\n", "outbox.path", "is not a regular file"),
    # the OS: NUL, lone surrogates, path and name lengths
    ('outbox:\n  path: "a\\0b"\n', "outbox.path", "holds U+0000 at character 2"),
    ("evidence:\n  dir: /var/" + "d" * 300 + "\n", "evidence.dir", "has a name of 300 bytes"),
    ("state_dir: /" + "/".join(["s" * 200] * 20) + "\n", "state_dir", "Linux paths end at 4095"),
    ("outbox:\n  path: /var/" + "o" * 250 + "\n", "outbox.path", "with -journal"),
    ("metrics:\n  host: '::1 '\n", "metrics.host", "is not an IP address"),
    ("web:\n  port: 9108\n", "web.port", "is metrics.port too"),
    ("cameras:\n  - {name: a, kind: v4l2, uri: '²'}\n", "cameras[0].uri", "neither a /dev/video index (0-255)"),
    ("cameras:\n  - {name: a, kind: v4l2, uri: '99999999999999999999'}\n", "cameras[0].uri", "/dev/video index"),
    # regexes: bounds the compiler lacks
    ("cameras:\n  - name: a\n    accept_patterns: ['a{1001}']\n", "cameras[0].accept_patterns[0]",
     "repeats 1001 times"),
    ("cameras:\n  - name: a\n    accept_patterns: ['" + "(" * 600 + "a" + ")" * 400 + "']\n",
     "cameras[0].accept_patterns[0]", "longer than 1000 characters"),
    ("cameras:\n  - name: a\n    accept_patterns: [" + ", ".join(["'" + "p" * 1000 + "'"] * 70) + "]\n",
     "cameras[0].accept_patterns[65]", "over 65536 characters"),
    ("cameras:\n  - name: a\n    accept_patterns: ['(?=LOT)L.*']\n", "cameras[0].accept_patterns[0]",
     "no lookaround or backreferences"),
    ("cameras:\n  - name: a\n    accept_patterns: ['(a)\\1']\n", "cameras[0].accept_patterns[0]", "RE2"),
    ("recipes:\n  - {name: r, expect_regex: '(?<=x)y'}\n", "recipes[0]", "RE2"),
    ("sparkplug: {enabled: true, primary_host_id: 'ign/ition'}\n", "sparkplug.primary_host_id", "topic level"),
    # Home Assistant discovery ids: two cameras that would be one sensor
    ("mqtt: {enabled: true}\nhomeassistant: {enabled: true}\ncameras:\n  - {name: dock.1, kind: sample}\n"
     "  - {name: dock_1, kind: sample}\n", "cameras[1].name", "is one Home Assistant sensor with camera 'dock.1'"),
    # a recipe's field values: only its template's fields, and only with a template
    ("recipes:\n  - {name: r, expect_template: 'LOT {lot}', expect_fields: {lto: '1'}}\n",
     "recipes[0].expect_fields.lto", "is not a field of expect_template (its fields: lot)"),
    ("recipes:\n  - {name: r, expect_text: 'LOT 1', expect_fields: {lot: '1'}}\n", "recipes[0].expect_fields",
     "needs an expect_template"),
    ("recipes:\n  - {name: r, expect_template: 'LOT {lot}', expect_fields: [lot]}\n", "recipes[0].expect_fields",
     "expected a mapping"),
    ("recipes:\n  - {name: r, expect_template: 'LOT {lot}', expect_fields: {lot: [1]}}\n",
     "recipes[0].expect_fields.lot", "expected a string"),
    ("cameras:\n  - {name: a, mode: triggered, kind: sample, expect_template: 'EXP {d:%Y}', expect_fields: {d: "
     + "x" * 300 + "}}\n", "cameras[0].expect_fields.d", "longer than 256"),
    # OCR shapes and counts past what any box runs: refused, not tried (threads: 100000 started tens of
    # thousands of threads; det_input_size [32000, 32000] asked for 11 GiB a frame)
    ("ocr:\n  threads: 100000\n", "ocr.threads", "0 (automatic) to 256"),
    ("ocr:\n  det_input_size: [32000, 32000]\n", "ocr.det_input_size[0]", "from 32 to 4096"),
    ("ocr:\n  det_batch: 100000\n", "ocr.det_batch", "1 to 64"),
    ("ocr:\n  tiles_max: 1000\n", "ocr.tiles_max", "to 64"),
    ("ocr:\n  rec_batch: 100000\n", "ocr.rec_batch", "1 to 256"),
    ("ocr:\n  rec_height: 10000\n  rec_width: 10000\n", "ocr.rec_height", "8 to 256"),
    ("ocr:\n  rec_width: 100000\n", "ocr.rec_width", "to 4096"),
    ("ocr:\n  det_max_candidates: 100000000\n", "ocr.det_max_candidates", "1 to 100000"),
])
def test_value_a_daemon_part_cannot_carry_is_refused_naming_its_key(tmp_path, content, key, fragment):
    err = _load_error(tmp_path, content)
    assert err.key.startswith(key) and fragment in str(err), str(err)


def test_secret_files_are_regular_capped_and_read_in_one_place(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"p" * (config.MAX_SECRET_BYTES + 1))
    err = _load_error(tmp_path, f"mqtt:\n  username: u\n  password_file: {big}\n")
    assert err.key == "mqtt.password_file" and f"more than {config.MAX_SECRET_BYTES}" in str(err)
    latin = tmp_path / "latin"
    latin.write_bytes("passé".encode("latin-1"))
    err = _load_error(tmp_path, f"web:\n  token_file: {latin}\n")
    assert err.key == "web.token_file" and "not UTF-8" in str(err)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    err = _load_error(tmp_path, f"opcua:\n  enabled: true\n  password_file: {empty}\n")
    assert err.key == "opcua.password_file" and "is empty" in str(err)
    # the daemon's own read at start goes through the same reader: a file swapped for /dev/zero later is refused
    with pytest.raises(ConfigError, match="mqtt.password_file: '/dev/zero' is not a regular file"):
        config.mqtt_password(MqttConfig(username="u", password_file="/dev/zero"))
    with pytest.raises(ConfigError, match="is not a regular file"):
        config.mqtt_password(MqttConfig(username="u", password_file=_fifo(tmp_path)))


def test_model_and_certificate_paths_must_be_regular_files(tmp_path):
    err = _load_error(tmp_path, "ocr:\n  det_model: /dev/zero\n")
    assert err.key == "ocr.det_model" and "character device" in str(err)
    err = _load_error(tmp_path, f"mqtt:\n  tls:\n    enabled: true\n    ca_file: {_fifo(tmp_path)}\n")
    assert err.key == "mqtt.tls.ca_file" and "a FIFO" in str(err)


def test_error_messages_show_a_long_value_cut_with_its_length(tmp_path):
    err = _load_error(tmp_path, "mqtt:\n  host: " + "h" * 900_000 + "\n")
    assert err.key == "mqtt.host" and "… (900000 characters)" in str(err) and len(str(err)) < 400
    err = _load_error(tmp_path, "mqtt:\n  port: [" + ", ".join(["1"] * 5000) + "]\n")
    assert "(5000 items)" in str(err) and len(str(err)) < 400


def test_what_a_real_config_uses_still_loads(tmp_path):
    # an anchor and a merge key for a camera's settings, a UTF-8 byte order mark, non-ASCII text where it is allowed
    path = tmp_path / "c.yaml"
    text = (
        "device_id: dock-1\n"
        "cameras:\n"
        "  - &cam {kind: sample, name: left, min_confidence: 0.7, accept_patterns: ['SF\\d{12,15}']}\n"
        "  - {<<: *cam, name: right, max_fps: 2.5}\n"
        "mqtt:\n  topic_prefix: usine/quai-é\n  client_id: Prüfstand-1\n  host: broker.example\n"
    )
    path.write_bytes("\ufeff".encode() + text.encode())
    cfg = config.load(path)
    assert [c.name for c in cfg.cameras] == ["left", "right"]
    assert cfg.cameras[1].min_confidence == 0.7 and cfg.cameras[1].max_fps == 2.5
    assert cfg.mqtt.topic_prefix == "usine/quai-é" and cfg.mqtt.client_id == "Prüfstand-1"


@pytest.mark.parametrize("key", ["mqtt.password_env", "opcua.password_env", "web.token_env"])
def test_a_password_pasted_where_a_variable_name_belongs_is_not_echoed(tmp_path, key):
    section, field = key.split(".")
    extra = "  enabled: true\n  username: u\n" if section == "opcua" else ""
    err = _load_error(tmp_path, f"{section}:\n{extra}  {field}: 'HUNTER2SECRET!xyz'\n")
    assert err.key == key and "HUNTER2" not in str(err) and "not shown" in str(err)
