"""The install's own files: requirements-lock.txt pins one version of each package on every Python that
setup.py accepts."""
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _python_requires() -> SpecifierSet:
    found = re.search(r'python_requires="([^"]+)"', (ROOT / "setup.py").read_text())
    return SpecifierSet(found.group(1))


def _lock() -> list[Requirement]:
    lines = (ROOT / "requirements-lock.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def test_python_requires_is_3_10_to_3_12():
    # rapidocr-onnxruntime 1.4.4 (a hard requirement: it carries the PP-OCRv4 models) requires Python <3.13.
    spec = _python_requires()
    assert [v for v in ("3.9", "3.10", "3.11", "3.12", "3.13") if v in spec] == ["3.10", "3.11", "3.12"]


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12"])
def test_the_lock_pins_each_package_once_on_every_supported_python(python):
    assert python in _python_requires()
    env = {"python_version": python, "python_full_version": python + ".0"}
    pins: dict[str, list[str]] = {}
    for req in _lock():
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", str(req)
        if req.marker is None or req.marker.evaluate(env):
            pins.setdefault(req.name.lower(), []).append(str(req.specifier))
    names = {req.name.lower() for req in _lock()}
    assert {n for n in names if len(pins.get(n, ())) != 1} == set(), pins


def test_the_3_10_pins_are_older_releases_of_the_same_packages():
    # numpy 2.4 and onnxruntime 1.32 have no cp310 wheels: a second, marked line pins the newest that has.
    by_name: dict[str, dict[str, str]] = {}
    for req in _lock():
        if req.marker is not None:
            side = "3.10" if req.marker.evaluate({"python_version": "3.10"}) else "3.11+"
            by_name.setdefault(req.name.lower(), {})[side] = next(iter(req.specifier)).version
    assert {"numpy", "onnxruntime"} <= set(by_name)
    for name, sides in by_name.items():
        assert set(sides) == {"3.10", "3.11+"}, (name, sides)
        assert Version(sides["3.10"]) < Version(sides["3.11+"]), (name, sides)
