"""bench/cpu_ceiling.py runs the real daemon loop on replayed model outputs: a tiny recording made with the real
models, replayed through the Service, reads every frame as recorded and reports a ceiling and every stage."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_ceiling_smoke_replays_the_recording_through_the_daemon_loop(tmp_path):
    out = tmp_path / "ceiling.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "cpu_ceiling.py"), "--smoke",
                           "--replay", str(tmp_path / "replay.npz"), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    # the headline is the TensorRT path's (the letterbox on the GPU), the ONNX Runtime path's beside it
    assert result["ceiling_config"]["det_pre"] == "gpu" and result["ceiling_frames_per_s"] > 0
    assert result["ceiling_loop_wall_ms_p95"] > 0 and result["ceiling_frames_per_s_cpu_letterbox"] > 0
    # the CPU path decodes the recognizer's softmax, the GPU path its top-3 head (TensorRT's): both as recorded
    assert [run["det_pre"] for run in result["runs"]] == ["cpu", "gpu"]
    for run in result["runs"]:
        assert run["replay_mismatches"] == 0
        assert run["frames_read_otherwise"] == 0 and run["frames_read_as_recorded"] > 0
        assert run["not_instrumented"] == []
        for stage in ("det", "det_post", "crop", "rec", "ctc", "lane", "loop"):
            assert run["stages_cpu_ms"][stage]["p50"] > 0, stage
        # codes are read on the code pool's thread; the loop only takes them
        assert run["codes_read_cpu_ms"]["count"] > 0 and run["codes_read_cpu_ms"]["p50"] > 0
