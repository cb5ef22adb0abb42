"""The unit file and the GPU drop-in, read as systemd reads their keys (no systemd needed)."""
import shlex
from pathlib import Path

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"


def _values(path: Path, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in path.read_text().splitlines() if line.startswith(key + "=")]


def test_reload_checks_the_file_the_daemon_runs_with_before_signalling_it():
    unit = SYSTEMD / "ocr-daemon.service"
    start = shlex.split(_values(unit, "ExecStart")[0])
    reload = [shlex.split(v) for v in _values(unit, "ExecReload")]
    # Lines run in order and the first that fails ends the reload job: check-config must come before the kill.
    assert reload == [[start[0], "check-config", start[start.index("--config") + 1]],
                      ["/bin/kill", "-HUP", "$MAINPID"]]


def test_onnxruntime_telemetry_is_off_in_the_unit():
    assert "ORT_DISABLE_TELEMETRY=1" in _values(SYSTEMD / "ocr-daemon.service", "Environment")


def test_the_argus_socket_bind_follows_nvargus_daemon():
    # The bind is made at start: skipped before nvargus-daemon made its socket, stale once it restarts.
    gpu = SYSTEMD / "gpu.conf"
    assert _values(gpu, "BindPaths") == ["-/tmp/argus_socket"]
    assert _values(gpu, "After") == ["nvargus-daemon.service"]
    assert _values(gpu, "PartOf") == ["nvargus-daemon.service"]
    assert "[Unit]" in gpu.read_text().splitlines()


def test_the_drain_warning_knows_the_units_stop_timeout():
    from daemon.config.config import UNIT_TIMEOUT_STOP_S

    assert _values(SYSTEMD / "ocr-daemon.service", "TimeoutStopSec") == [f"{UNIT_TIMEOUT_STOP_S:g}"]
