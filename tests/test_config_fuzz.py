"""Config fuzz: seeded mutations of the bundled config.yaml (wrong types, huge and negative numbers, deep nesting,
random bytes, unicode, anchors, long strings, unknown and removed keys). Every case loads or raises ConfigError with
one line, never another exception; a batch goes through `check-config` as processes, exit 0 or 2, no traceback."""
import copy
import os
import random
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from daemon import config
from daemon.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (ROOT / "config.yaml").read_text(encoding="utf-8")
IN_PROCESS_CASES = 400
PROCESS_CASES = 20
ADDRESS_SPACE_BYTES = 1536 * 1024 * 1024

HOSTILE_VALUES = [
    None, True, False, 0, -1, 1, 7, 2 ** 31, 2 ** 63, -2 ** 63, 2 ** 64, 10 ** 30, -10 ** 400, 0.5, -0.0, 1e308,
    float("inf"), float("-inf"), float("nan"), "", " ", "x" * 70_000, "\x00", "a\x00b", "\x1b[31m", "é" * 40, "💥",
    "\ufeff", "\ufffe", "\ud800", "../../etc/passwd", "/dev/zero", "/dev/null", "/", "0.0.0.0", "::1", "a/#", "+",
    "$SYS", "a" * 300, "(unclosed", "a{99999999999}", "(" * 500 + ")" * 500, "1e300", "0x" + "f" * 80, "yes", "~",
    [], [1, 2, 3], [[[[[[[[[[]]]]]]]]]], {}, {"a": 1}, {"enabled": "yes"}, [None] * 50,
]


SHIPPED_DATA = yaml.safe_load(SHIPPED)


def _dump(data: dict) -> str:
    """The data as YAML text; PyYAML's own emitter for what libyaml's refuses (a lone surrogate)."""
    try:
        return yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=True)
    except UnicodeEncodeError:
        return yaml.safe_dump(data, allow_unicode=True)


def _mappings(data, path=()):
    """(path, mapping) of every mapping in the data, the root first."""
    if isinstance(data, dict):
        yield path, data
        for k, v in data.items():
            yield from _mappings(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _mappings(v, path + (i,))


def _mutate_data(rng: random.Random) -> dict:
    """The shipped config as data with one to three mutations: a hostile value, a removed key, an unknown key,
    a value wrapped deep or swapped for another key's."""
    data = copy.deepcopy(SHIPPED_DATA)
    for _ in range(rng.randint(1, 3)):
        mappings = [m for _, m in _mappings(data)]
        target = rng.choice(mappings)
        op = rng.randrange(6)
        if op == 0 or not target:
            target[rng.choice(list(target) or ["colour"])] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
        elif op == 1:
            del target[rng.choice(list(target))]
        elif op == 2:
            target[rng.choice(["colour", "Enabled", "", "ocr ", "cameras[0]", 5, None])] = rng.choice(HOSTILE_VALUES)
        elif op == 3:
            key = rng.choice(list(target))
            value = target[key]
            for _ in range(rng.choice([2, 20, 40])):
                value = [value]
            target[key] = value
        elif op == 4:
            key = rng.choice(list(target))
            other = rng.choice(mappings)
            if other:
                target[key] = copy.deepcopy(other[rng.choice(list(other))])
        else:
            key = rng.choice(list(target))
            value = target[key]
            target[key] = str(value) if not isinstance(value, str) else (int(value) if value.isdigit() else 12345)
    return data


def _laughs(rng: random.Random) -> str:
    width, levels = rng.randint(2, 10), rng.randint(2, 12)
    lines = [f"    - &L{i} [" + ", ".join(['"lol"' if i == 0 else f"*L{i - 1}"] * width) + "]" for i in range(levels)]
    return "  accept_patterns:\n" + "\n".join(lines) + "\n"


def _mutate_text(rng: random.Random) -> bytes:
    """The shipped file's text or bytes with one mutation: random bytes, a cut, control or odd characters,
    anchors that multiply, a huge number, deep brackets, another encoding."""
    text = SHIPPED
    at = rng.randrange(len(text))
    op = rng.randrange(10)
    if op == 0:
        return text[:at].encode() + rng.randbytes(rng.randint(1, 64)) + text[at:].encode()
    if op == 1:
        return text[:at].encode()
    if op == 2:
        return (text[:at] + chr(rng.choice([0, 1, 8, 0x1b, 0x7f, 0x85, 0xa0, 0xfeff, 0xfffe, 0x1f4a5])) + text[at:]).encode()
    if op == 3:
        return (text + "cameras:\n  - name: lol\n" + _laughs(rng).replace("  accept", "    accept")).encode()
    if op == 4:
        line_start = text.rfind("\n", 0, at) + 1
        line_end = text.find("\n", at)
        line = text[line_start:line_end]
        if ":" in line:
            key = line.split(":", 1)[0]
            line = f"{key}: {rng.choice(['9' * rng.randint(19, 6000), '-' + '1' * 70, '0x' + 'f' * 5000, '1:2:3:4:5'])}"
        return (text[:line_start] + line + text[line_end:]).encode()
    if op == 5:
        depth = rng.choice([33, 100, 5000])
        return (text[:at] + "[" * depth + text[at:]).encode()
    if op == 6:
        return text.encode(rng.choice(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]), errors="replace")
    if op == 7:
        lines = text.splitlines(keepends=True)
        i = rng.randrange(len(lines))
        return "".join(lines[:i] + [lines[i]] * rng.randint(2, 5) + lines[i:]).encode()
    if op == 8:
        return (text[:at] + "\t" + text[at:]).encode()
    return (text.replace("mqtt:\n", "mqtt: &m\n", 1) + "homeassistant: *m\n").encode()


def _case(seed: int) -> bytes | dict:
    rng = random.Random(seed)
    return _mutate_data(rng) if rng.random() < 0.5 else _mutate_text(rng)


def _check_outcome(load) -> str:
    try:
        load()
        return "ok"
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) <= config.MAX_MESSAGE_CHARS + 30, message
        return "refused"


def test_every_mutated_config_loads_or_raises_a_one_line_config_error(tmp_path):
    outcomes = {"ok": 0, "refused": 0}
    path = tmp_path / "config.yaml"
    for seed in range(IN_PROCESS_CASES):
        case = _case(seed)
        if isinstance(case, dict):
            outcome = _check_outcome(lambda: config.from_dict(case))
            path.write_text(_dump(case), encoding="utf-8", errors="surrogatepass")
            _check_outcome(lambda: config.load(path))
        else:
            path.write_bytes(case)
            outcome = _check_outcome(lambda: config.load(path))
        outcomes[outcome] += 1
    # the mutations reach past the first check: some cases still load, most are refused
    assert outcomes["ok"] >= 10 and outcomes["refused"] >= IN_PROCESS_CASES // 2, outcomes


def _bounded():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))


def test_mutated_configs_through_check_config_exit_0_or_2_without_a_traceback(tmp_path):
    files = []
    for seed in range(10_000, 10_000 + PROCESS_CASES):
        case = _case(seed)
        path = tmp_path / f"c{seed}.yaml"
        if isinstance(case, dict):
            path.write_text(_dump(case), encoding="utf-8", errors="surrogatepass")
        else:
            path.write_bytes(case)
        files.append(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "daemon", "check-config", str(p)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env, preexec_fn=_bounded)
             for p in files]
    codes = []
    for path, proc in zip(files, procs):
        out, err = proc.communicate(timeout=120)
        codes.append(proc.returncode)
        assert proc.returncode in (0, 2) and "Traceback" not in err, (path.name, err[-2000:])
        if proc.returncode == 2:
            assert len(err.strip().splitlines()) == 1 and out == "", err
        else:
            assert err == "" or "WARNING" in err, err   # a password without TLS is a warning, not an error
    assert 2 in codes, codes


@pytest.mark.parametrize("seed", [3, 11])
def test_cases_are_the_same_for_a_seed(seed):
    assert _case(seed) == _case(seed)
