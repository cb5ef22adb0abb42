"""The install's own files: requirements-lock.txt pins one version of each package on every Python that
setup.py accepts, and systemd/install.sh's config and CLI link (its functions, sourced: the rest of it needs
root and systemd)."""
import re
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from daemon.config import config as config_mod

ROOT = Path(__file__).resolve().parent.parent
INSTALL_SH = ROOT / "systemd" / "install.sh"


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


def test_make_venv_refuses_the_pythons_that_setup_py_refuses():
    # pip does not apply python_requires to a local directory: make-venv.sh checks the version itself.
    found = re.search(r"\(3, (\d+)\) <= sys.version_info\[:2\] < \(3, (\d+)\)",
                      (ROOT / "systemd" / "make-venv.sh").read_text())
    low, high = int(found.group(1)), int(found.group(2))
    spec = _python_requires()
    assert [minor for minor in range(6, 20) if f"3.{minor}" in spec] == list(range(low, high))


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


def _install_sh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f'source "{INSTALL_SH}"; {script}'], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=30)


@pytest.mark.parametrize("gpu, backend", [("0", "onnxruntime"), ("1", "auto")])
def test_install_writes_a_config_whose_backend_fits_the_install(tmp_path, gpu, backend):
    dest = tmp_path / "config.yaml"
    proc = _install_sh(f'write_config "{ROOT / "config.yaml"}" "{dest}" {gpu}')
    assert proc.returncode == 0, proc.stderr
    cfg = config_mod.load(dest)
    assert cfg.backend == backend
    assert cfg.state_dir == "/var/lib/ocr-daemon"
    assert cfg.ocr.cpu_fold_dir == "/var/cache/ocr-daemon/cpu-models"
    assert not (tmp_path / "config.yaml.new").exists()
    # only the values changed; the comments still line up
    assert dest.read_text().count("\n") == (ROOT / "config.yaml").read_text().count("\n")
    assert re.search(rf"^backend: {backend} +# auto \| tensorrt \| onnxruntime", dest.read_text(), re.M)


def test_install_links_the_cli_once_and_leaves_another_file_alone(tmp_path):
    link = tmp_path / "bin" / "ocr-daemon"
    target = "/opt/ocr-daemon/venv/bin/ocr-daemon"
    for _ in range(2):                                  # idempotent
        proc = _install_sh(f'link_cli {target} "{link}"')
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        assert link.is_symlink() and str(link.readlink()) == target
    link.unlink()
    link.write_text("#!/bin/sh\necho someone else's\n")
    proc = _install_sh(f'link_cli {target} "{link}"')
    assert proc.returncode == 0
    assert not link.is_symlink() and link.read_text() == "#!/bin/sh\necho someone else's\n"
    assert f"{link} exists and is not a link to {target}; left as it is" in proc.stderr
