"""bench/readings_same.py writes every frame's readings (real models, real code reader) and tells two such files
apart to the last bit: the softmax head's readings are the same as the top-3 head's (what TensorRT engines return),
and one changed confidence is a difference."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "readings_same.py"


def test_readings_of_either_recognizer_head_compare_the_same_and_a_changed_confidence_does_not(tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    for out, head in ((first, []), (second, ["--rec-head", "top3"])):
        proc = subprocess.run([sys.executable, str(SCRIPT), "--labels", "1", "--frames", "2", "--json", str(out), *head],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    same = subprocess.run([sys.executable, str(SCRIPT), "--compare", str(first), str(second)],
                          capture_output=True, text=True, timeout=60)
    assert same.returncode == 0 and "the same" in same.stdout, same.stdout
    doc = json.loads(second.read_text())
    assert len(doc["frames"]) == 6       # the four bundled samples and the label's two frames
    name, frame = next((n, f) for n, f in doc["frames"].items() if f["lines"])
    frame["lines"][0]["confidence"] = float.fromhex(frame["lines"][0]["confidence"]).__add__(1e-12).hex()
    second.write_text(json.dumps(doc))
    differ = subprocess.run([sys.executable, str(SCRIPT), "--compare", str(first), str(second)],
                            capture_output=True, text=True, timeout=60)
    assert differ.returncode == 1 and "1 frames differ" in differ.stdout and name in differ.stdout, differ.stdout
