"""The thread policy reads physical cores from a real (temporary) sysfs-like topology tree."""
from pathlib import Path

from daemon.backends.onnxruntime.threads import default_threads, physical_cores


def _topology(root: Path, cpus: dict[int, tuple[int, int]]) -> Path:
    for cpu, (package, core) in cpus.items():
        d = root / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "physical_package_id").write_text(f"{package}\n")
        (d / "core_id").write_text(f"{core}\n")
    return root


def test_smt_siblings_count_once(tmp_path):
    # 8 vCPUs: 4 cores with two hardware threads each (siblings 0/4, 1/5, ...)
    topo = _topology(tmp_path, {c: (0, c % 4) for c in range(8)})
    assert physical_cores(range(8), topo) == 4
    assert physical_cores([0, 4], topo) == 1          # taskset to one core's two threads


def test_two_sockets_are_distinct(tmp_path):
    topo = _topology(tmp_path, {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)})
    assert physical_cores(range(4), topo) == 4


def test_unreadable_topology_falls_back_to_logical_count(tmp_path):
    assert physical_cores(range(6), tmp_path / "missing") == 6


def test_configured_threads_win():
    assert default_threads(3) == 3
    assert default_threads(0) >= 1
