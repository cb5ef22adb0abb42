"""Codes beside the text (issue 11, items 1 and 3), on real parts: real Code 128 / QR / GS1 codes drawn with zxing-cpp's
writer onto rendered labels, read by the daemon's reader, through the real OCR pipeline, outbox and `once --json`.
Bounded by deadlines, no timing assertions."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import jsonschema
import pytest

from daemon import config
from daemon.codes import CODE_FORMATS
from daemon.codes.gs1 import parse_gs1
from daemon.codes.reader import CodeReader
from daemon.samples.codes import code_label, paste_code
from daemon.samples.render import render_label
from daemon.service import Service
from publish_support import VALIDATOR
from broker import wait_until
from service_support import work_loop

ROOT = Path(__file__).resolve().parents[1]
S10 = "EE123456785CN"          # the UPU S10 example: check digit 5


def test_every_configurable_format_name_is_one_zxing_knows():
    import zxingcpp
    for name in CODE_FORMATS:
        zxingcpp.barcode_formats_from_str(name)


@pytest.mark.parametrize("fmt, scale", [("Code128", 2), ("QRCode", 4)])
def test_a_code_on_a_rendered_1280x960_label_is_read_with_its_box(fmt, scale):
    label = render_label(105).image
    image = paste_code(label, S10, 820, 40, fmt, scale, height_px=80)
    [code] = CodeReader(["Code128", "QRCode"]).read(image)
    assert (code.format, code.text) == (fmt, S10) and code.gs1 is None
    xs, ys = [p[0] for p in code.box], [p[1] for p in code.box]
    assert 800 <= min(xs) < max(xs) <= 1280 and 30 <= min(ys) < max(ys) <= 500
    assert CodeReader(["DataMatrix"]).read(image) == []          # a format not asked for is not read


def test_gs1_codes_are_parsed_into_application_identifiers_and_a_bad_check_digit_reported():
    label = render_label(106).image
    good = paste_code(label, "(00)340123451234567895(17)261130", 700, 40, "Code128", 2, gs1=True, height_px=80)
    [code] = CodeReader(["Code128"]).read(good)
    assert code.gs1 == {"00": "340123451234567895", "17": "2026-11-30"} and code.gs1_error is None
    assert code.to_json()["text"] == "(00)340123451234567895(17)261130"
    bad = paste_code(label, "(00)340123451234567894(17)261130", 700, 40, "Code128", 2, gs1=True, height_px=80)
    [code] = CodeReader(["Code128"]).read(bad)
    assert code.gs1["00"] == "340123451234567894" and "check digit" in code.gs1_error
    dm = paste_code(label, "(01)04006381333931(10)AB12(17)261130", 1000, 40, "DataMatrix", 4, gs1=True)
    [code] = CodeReader(["DataMatrix"]).read(dm)
    assert code.format == "DataMatrix" and code.gs1 == {"01": "04006381333931", "10": "AB12", "17": "2026-11-30"}


def test_parse_gs1_of_a_malformed_message_says_so():
    ais, error = parse_gs1("(99")
    assert ais == {} and error


def test_codes_and_the_lines_they_confirm_or_contradict_reach_the_outbox(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    cfg = config.from_dict({
        "device_id": "dock", "backend": "onnxruntime",
        "ocr": {"det_input_size": [256, 704], "use_angle_classifier": False, "threads": 1},
        "cameras": [{"name": "scan", "kind": "folder", "uri": str(scans), "watchdog_s": 0,
                     "accept_formats": ["s10"], "codes": ["Code128", "QRCode"]}],
        "mqtt": {"enabled": False}, "metrics": {"enabled": False},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
    })
    # One label whose Code 128 carries the printed number, one whose QR code carries another (the text misread
    # or the label reprinted): the code's value is published beside the text.
    cv2.imwrite(str(scans / "a_agree.png"), code_label(S10, S10, "Code128"))
    cv2.imwrite(str(scans / "b_differ.png"), code_label("RR473124829GB", "RR473124838GB", "QRCode"))
    service = Service(cfg, str(tmp_path / "unused.yaml"))
    service.start()
    with work_loop(service):
        done = scans / "done"
        assert wait_until(lambda: (done / "a_agree.png").exists() and (done / "b_differ.png").exists(), 180)
        docs = {json.loads(r.payload)["source"]["file"]: json.loads(r.payload) for r in service.outbox.pending(10)}
        for doc in docs.values():
            VALIDATOR.validate(doc)
            assert doc["schema"] == "ocr-result/4" and "codes" in doc["latency_ms"]
        agree = docs["a_agree.png"]
        assert [(c["format"], c["text"]) for c in agree["codes"]] == [("Code128", S10)]
        [line] = [t for t in agree["texts"] if t["text"].replace(" ", "") == S10]
        assert line["format"] == "s10" and line["confirmed_by"] == "code"
        differ = docs["b_differ.png"]
        assert [(c["format"], c["text"]) for c in differ["codes"]] == [("QRCode", "RR473124838GB")]
        [line] = [t for t in differ["texts"] if t.get("format") == "s10"]
        assert line["text"].replace(" ", "") == "RR473124829GB" and line["code_value"] == "RR473124838GB"
        checks = service.snapshot()["cameras"]["scan"]["checks"]
        assert checks["code_confirmed"] >= 1 and checks["code_mismatch"] >= 1


def test_once_json_prints_the_codes_of_each_image(tmp_path):
    image = tmp_path / "label.png"
    cv2.imwrite(str(image), code_label(S10, S10, "Code128"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ocr:\n  det_input_size: [256, 704]\n  use_angle_classifier: false\n  threads: 1\n")
    proc = subprocess.run([sys.executable, "-m", "daemon", "once", str(image), "--json", "--config", str(cfg)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [rec] = [json.loads(l) for l in proc.stdout.splitlines()]
    assert [(c["format"], c["text"]) for c in rec["codes"]] == [("Code128", S10)]
    assert len(rec["codes"][0]["box"]) == 4 and "codes" in rec["timing_ms"]
    assert any(t["text"].replace(" ", "") == S10 for t in rec["texts"])


def test_checks_per_camera_are_exported_as_a_counter_by_outcome():
    from daemon.metrics import Metrics
    snap = {"cameras": {"scan": {"rejected": {"check_digit": 2},
                                 "checks": {"check_digit_corrected": 1, "code_confirmed": 3, "code_mismatch": 1}}}}
    text = Metrics(lambda: snap).exposition().decode()
    assert 'ocr_results_checked_total{camera="scan",outcome="code_mismatch"} 1.0' in text
    assert 'ocr_results_checked_total{camera="scan",outcome="check_digit_corrected"} 1.0' in text
    assert 'ocr_results_rejected_total{camera="scan",reason="check_digit"} 2.0' in text


def test_each_camera_learns_its_own_formats():
    """Two cameras on the default list have a code reader each: what one camera's labels carry is not what the
    other searches every frame for."""
    import numpy as np

    from daemon import config
    from daemon.readings import Lane

    cfg = config.from_dict({"mqtt": {"enabled": False}, "cameras": [{"name": "a", "kind": "sample"},
                                                                   {"name": "b", "kind": "sample"}]})
    a, b = Lane(cfg.cameras[0]), Lane(cfg.cameras[1])
    blank = np.full((96, 128, 3), 255, np.uint8)
    assert a.read_codes(blank)[0] == [] and b.read_codes(blank)[0] == []
    assert a._readers[a.code_formats] is not b._readers[b.code_formats]


def test_a_folder_camera_searches_every_scan_for_every_format():
    """Found from outside: a folder camera on the default list learned like a stream camera; once its start-up
    budget was spent, 11 of 18 scans of other formats (every EAN-13 and PDF417) were stored without their codes. A
    scan is read once: nothing is left to a later frame."""
    from daemon import config
    from daemon.readings import Lane
    from daemon.samples.codes import code_label

    cfg = config.from_dict({"mqtt": {"enabled": False}, "cameras": [
        {"name": "scans", "kind": "folder", "uri": "/srv/scans"}, {"name": "belt", "kind": "sample"}]})
    scans, belt = Lane(cfg.cameras[0]), Lane(cfg.cameras[1])
    assert scans.read_codes(code_label("LABEL", "RR123456785CH", "Code128"))[0]
    assert belt.read_codes(code_label("LABEL", "RR123456785CH", "Code128"))[0]
    assert not scans._readers[scans.code_formats].learns and belt._readers[belt.code_formats].learns
