"""How many threads ONNX Runtime gets: one per physical core this process may use.

Left to itself (intra_op_num_threads 0) ONNX Runtime sizes its pool from the whole machine, not from the
CPUs this process may run on: under taskset or a cgroup cpuset it then runs more threads than it has
cores (bench/RESULTS.md section 17a). SMT siblings are counted once: two threads on one core share its
vector units, and one thread per physical core reads faster than one per vCPU (section 1b). Physical
cores are read from Linux's CPU topology, within the process's affinity mask.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

_TOPOLOGY = Path("/sys/devices/system/cpu")


def usable_cpus() -> set[int]:
    """The logical CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):        # not Linux
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: Iterable[int] | None = None, topology: Path = _TOPOLOGY) -> int:
    """Distinct (package, core) pairs among ``cpus``; the logical count where the topology is unreadable."""
    cpus = sorted(usable_cpus() if cpus is None else cpus)
    cores = set()
    for cpu in cpus:
        base = topology / f"cpu{cpu}" / "topology"
        try:
            cores.add((base.joinpath("physical_package_id").read_text().strip(),
                       base.joinpath("core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def default_threads(configured: int) -> int:
    """ocr.threads as ONNX Runtime gets it: the configured count, or (0) one per physical core."""
    return configured if configured > 0 else physical_cores()
