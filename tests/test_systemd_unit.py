"""The unit file and the GPU drop-in, read as systemd reads their keys, and install.sh's systemctl calls (no systemd
needed)."""
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


def test_onnxruntime_telemetry_is_off_in_the_unit_and_malloc_keeps_two_arenas():
    env = _values(SYSTEMD / "ocr-daemon.service", "Environment")
    assert "ORT_DISABLE_TELEMETRY=1" in env and "MALLOC_ARENA_MAX=2" in env


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


def test_install_restarts_the_service_so_a_rerun_runs_the_upgraded_venv():
    # `enable --now` leaves a running daemon on the old code after a re-run has upgraded its venv
    script = (SYSTEMD / "install.sh").read_text()
    lines = [line.strip() for line in script.splitlines() if line.strip().startswith("systemctl ")]
    assert "systemctl enable ocr-daemon.service" in lines and "systemctl restart ocr-daemon.service" in lines
    assert not any("--now" in line for line in lines)
    assert lines.index("systemctl daemon-reload") < lines.index("systemctl restart ocr-daemon.service")
