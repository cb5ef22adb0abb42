"""The command line as a user runs it: `once` prints one JSON line per image, `bench` a table and JSON."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "daemon" / "samples"


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "daemon", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_once_prints_a_json_line_per_image_and_survives_a_bad_one(tmp_path):
    good = sorted(SAMPLES.glob("*.png"))[0]
    bad = tmp_path / "truncated.png"
    bad.write_bytes(good.read_bytes()[:500])
    proc = _cli("once", str(good), str(bad), str(good), "--json")
    assert proc.returncode == 1, proc.stderr          # one image failed
    lines = [json.loads(l) for l in proc.stdout.splitlines()]
    assert [l["image"] for l in lines] == [str(good), str(bad), str(good)]
    assert "truncated.png" in lines[1]["error"]
    for rec in (lines[0], lines[2]):
        assert rec["texts"], "the sample label has text"
        for t in rec["texts"]:
            assert set(t) == {"text", "confidence", "box"} and len(t["box"]) == 4
        assert {"decode", "det", "rec", "total"} <= set(rec["timing_ms"])
    assert lines[0]["texts"] == lines[2]["texts"]     # deterministic


def test_once_with_invalid_config_exits_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ocr:\n  rec_batch: many\n")
    proc = _cli("once", str(sorted(SAMPLES.glob("*.png"))[0]), "--config", str(cfg))
    assert proc.returncode == 2 and "ocr.rec_batch" in proc.stderr


def test_once_without_config_reads_the_working_directorys_config_yaml_as_run_does(tmp_path):
    (tmp_path / "config.yaml").write_text("ocr:\n  rec_batch: many\n")
    proc = _cli("once", str(sorted(SAMPLES.glob("*.png"))[0]), cwd=tmp_path)
    assert proc.returncode == 2 and "config.yaml" in proc.stderr and "ocr.rec_batch" in proc.stderr


def test_bench_prints_a_table_and_writes_json(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted(SAMPLES.glob("*.png"))[:2]:
        shutil.copy(p, images / p.name)
    shutil.copy(SAMPLES / "labels.jsonl", images / "labels.jsonl")
    out = tmp_path / "bench.json"
    proc = _cli("bench", "--images", str(images), "--repeat", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "| pipeline |" in proc.stdout and "| rapidocr |" in proc.stdout and "| models_alone |" in proc.stdout
    report = json.loads(out.read_text())
    assert report["images"] == 2
    for system in ("pipeline", "rapidocr", "models_alone"):
        assert report["systems"][system]["images_per_s"] > 0
    assert 0.0 < report["overhead_share"] < 1.0
    assert report["accuracy"]["pipeline"]["lines"] > 0


def test_a_command_imports_only_its_own_module():
    # `once` importing the service (and its web, MQTT and source modules) cost 0.3 s of start-up per process
    probe = ("import sys; from daemon import cli; p = cli._parser(['once', 'x.png']); "
             "a = p.parse_args(['once', 'x.png']); print(a._module, 'daemon.service' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.split() == ["daemon.once", "False"], done.stderr
    listing = _cli("--help")
    assert listing.returncode == 0 and "once" in listing.stdout and "calibrate" in listing.stdout


def test_once_refuses_a_bomb_a_fifo_and_names_a_latin1_file_in_valid_utf8(tmp_path):
    """Found from outside: a 168 KB PNG of 12000x12000 took 2 GB (no decode limit in `once`), a FIFO named on the
    command line hung it for ever, and a Latin-1 file name broke its JSON output."""
    import os
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    bomb = tmp_path / "bomb.png"   # 12000x12000 grey, every row the same: tiny on disk
    rows = zlib.compress(b"".join(b"\x00" + bytes(12000) for _ in range(12000)), 9)
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    fifo = tmp_path / "scanner.png"
    os.mkfifo(fifo)
    latin = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")
    with open(latin, "wb") as f:
        f.write((sorted(SAMPLES.glob("*.png"))[0]).read_bytes())
    proc = subprocess.run([sys.executable, "-m", "daemon", "once", str(bomb), str(fifo), latin, "--json"],
                          capture_output=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]   # valid UTF-8, each line
    assert "pixels" in lines[0]["error"] or "max_frame_pixels" in lines[0]["error"], lines[0]
    assert "not a regular file" in lines[1]["error"]
    assert lines[2]["image"].endswith("caf\\xe9.png") and lines[2]["texts"]


def test_once_keeps_onnxruntime_telemetry_off_and_leaves_no_store(tmp_path):
    # ONNX Runtime's Linux wheels phone Microsoft and keep an event store in ~/.cache/Microsoft unless
    # ORT_DISABLE_TELEMETRY is set: the package sets it before anything imports onnxruntime.
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "daemon", "once", str(sorted(SAMPLES.glob("*.png"))[0]), "--json"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["texts"]
    assert not (home / ".cache" / "Microsoft").exists()


def test_anything_that_imports_the_package_has_telemetry_off_unless_opted_in():
    # the benches and the tests import the package, not the CLI, before they reach onnxruntime
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    show = [sys.executable, "-c", "import daemon.ocr.pipeline, os; print(os.environ['ORT_DISABLE_TELEMETRY'])"]
    assert subprocess.run(show, capture_output=True, text=True, cwd=ROOT, env=env).stdout.strip() == "1"
    opted_in = subprocess.run(show, capture_output=True, text=True, cwd=ROOT, env={**env, "ORT_DISABLE_TELEMETRY": "0"})
    assert opted_in.stdout.strip() == "0"


def _with_stdout_closed(*args):
    """The command with its stdout's reader gone before it writes (`ocr-daemon ... | true`): exit code, stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "daemon", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    return proc.wait(timeout=600), err


def test_a_closed_stdout_ends_a_command_quietly_and_a_report_keeps_its_exit_code(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ocr:\n  rec_batch: many\n")
    assert _with_stdout_closed("check-config", str(ROOT / "config.yaml")) == (0, "")   # valid: still 0
    code, err = _with_stdout_closed("check-config", str(bad))
    assert code == 2 and "ocr.rec_batch" in err
    code, err = _with_stdout_closed("doctor", "--config", str(ROOT / "config.yaml"))
    assert code == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
    code, err = _with_stdout_closed("once", str(sorted(SAMPLES.glob("*.png"))[0]))   # cut off mid-output
    assert code == 1 and "Traceback" not in err and "BrokenPipe" not in err, err
