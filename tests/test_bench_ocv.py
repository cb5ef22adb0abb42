"""bench/ocv_quality.py's smoke run: a good print passes and a faulty one is caught, through the real pipeline."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ocv_bench_smoke_passes_the_good_print_and_catches_the_wrong_digit(tmp_path):
    out = tmp_path / "ocv.json"
    proc = subprocess.run([sys.executable, "bench/ocv_quality.py", "--smoke", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text(encoding="utf-8"))
    default = f"{doc['default_margin']:g}"
    assert doc["prints"] == 2
    assert doc["summary"]["good/all"][default]["wrong"] == 0
    assert doc["summary"]["fault/wrong_digit"][default]["wrong"] == 0
    assert "| fault/wrong_digit | 1 | 0 |" in proc.stdout
