"""What a maintainer reruns in bench/ keeps working: every script answers --help, every daemon name it imports
(also inside its functions, where --help never reaches, as in the GPU scripts) still exists, and bench/README.md
gives each one its command. A retired experiment leaves bench/ for git history (bench/README.md says how)."""
import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SCRIPTS = sorted([*BENCH.glob("*.py"), *BENCH.glob("*.sh")])


def _command(script: Path) -> list[str]:
    return ["bash", str(script)] if script.suffix == ".sh" else [sys.executable, str(script)]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_answers_help_with_its_usage(script):
    proc = subprocess.run([*_command(script), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.lower().startswith("usage:"), proc.stdout[:500]


def _daemon_imports(script: Path):
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "daemon":
            yield from ((node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names if alias.name.split(".")[0] == "daemon")


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.suffix == ".py"], ids=lambda p: p.name)
def test_every_daemon_name_a_bench_script_imports_still_exists(script):
    missing = [f"{module} {name or ''}" for module, name in _daemon_imports(script) if not _exists(module, name)]
    assert not missing, f"{script.name} imports what the daemon no longer has: {missing}"


def _exists(module: str, name: str | None) -> bool:
    try:
        found = importlib.import_module(module)
        return name is None or hasattr(found, name) or importlib.util.find_spec(f"{module}.{name}") is not None
    except ImportError:
        return False


def test_bench_readme_gives_a_command_for_every_script():
    readme = (BENCH / "README.md").read_text(encoding="utf-8")
    assert [s.name for s in SCRIPTS if f"bench/{s.name}" not in readme] == []
