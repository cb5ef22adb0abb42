"""Every common code format by default (issue 33 item 2): real codes drawn with zxing-cpp's writer onto rendered
1280x960 labels (daemon/samples/codes.py: small, blurred, at an angle, under glare, turned), read by the default
reader with real zxing-cpp. Deterministic: one seed per case; read rates over many seeds are bench/codes_cost.py's
(bench/RESULTS.md section 33)."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import zxingcpp

from daemon import config
from daemon.codes import CODE_FORMATS
from daemon.codes.match import CONFIRMED, match_codes
from daemon.codes import reader as reader_module
from daemon.codes.reader import CodeReader, config_name
from daemon.readings.results_filter import PublishedLine
from daemon.samples.codes import FORMAT_SAMPLES, SCENE_VARIANTS, code_image, code_scene

SEED = 102
UPRIGHT_AND_HARDER = [v for v in SCENE_VARIANTS if v != "inverted"]
SCENE_FORMATS = [f for f in FORMAT_SAMPLES if f != "MaxiCode"]     # MaxiCode: read alone only (below)


def _default_reader(clock=None) -> CodeReader:
    """A fresh reader of the default list: one that has learned nothing and has its search budget saved up."""
    codes = config.from_dict({}).cameras[0].codes
    return CodeReader(codes, clock) if clock else CodeReader(codes)


def _reads(codes, fmt, text=None) -> bool:
    sample = FORMAT_SAMPLES[fmt]
    return any(c.format in sample.reported and c.text == (text or sample.text) for c in codes)


def _line(text):
    return PublishedLine(text, 0.95, ((10.0, 20.0), (300.0, 20.0), (300.0, 50.0), (10.0, 50.0)))


def test_the_default_is_every_format_the_daemon_reads_and_each_sample_format_is_one():
    assert config.from_dict({}).cameras[0].codes == CODE_FORMATS
    assert set(FORMAT_SAMPLES) <= set(CODE_FORMATS)
    for name in CODE_FORMATS:
        zxingcpp.barcode_formats_from_str(name)


@pytest.mark.parametrize("variant", UPRIGHT_AND_HARDER)
@pytest.mark.parametrize("fmt", SCENE_FORMATS)
def test_each_common_format_is_read_by_default_on_a_rendered_label(fmt, variant):
    seed = 105 if (fmt, variant) == ("Aztec", "glare") else SEED    # a compact Aztec under glare: often lost
    codes = _default_reader().read(code_scene(fmt, seed, variant))
    assert _reads(codes, fmt), [(c.format, c.text) for c in codes]
    [code] = [c for c in codes if c.text == FORMAT_SAMPLES[fmt].text]
    xs, ys = [p[0] for p in code.box], [p[1] for p in code.box]
    assert 0 <= min(xs) < max(xs) <= 1280 and 0 <= min(ys) < max(ys) <= 960


@pytest.mark.parametrize("fmt", ["QRCode", "Aztec"])
def test_light_on_dark_2d_codes_are_read_by_default(fmt):
    assert _reads(_default_reader().read(code_scene(fmt, SEED, "inverted")), fmt)


def test_a_maxicode_is_read_when_it_is_alone_in_the_frame_or_roi():
    # zxing-cpp 3.1 finds a MaxiCode only where it is the only thing in the image (an ROI around it).
    symbol = cv2.resize(code_image("1Z999AA10123456784", "MaxiCode", 1), None, fx=0.9, fy=0.9,
                        interpolation=cv2.INTER_AREA)
    roi = cv2.cvtColor(cv2.copyMakeBorder(symbol, 30, 30, 30, 30, cv2.BORDER_CONSTANT, value=255),
                       cv2.COLOR_GRAY2BGR)
    [code] = _default_reader().read(roi)
    assert (code.format, code.text) == ("MaxiCode", "1Z999AA10123456784")


@pytest.mark.parametrize("fmt", ["Code128", "QRCode"])
def test_code128_and_qr_are_read_wherever_the_old_default_read_them(fmt):
    old = zxingcpp.barcode_formats_from_str("Code128,QRCode")       # the old default, as it was read
    for seed in (100, 101, 102):
        for variant in SCENE_VARIANTS:
            frame = code_scene(fmt, seed, variant)
            if _reads([_as_code(b) for b in zxingcpp.read_barcodes(frame, formats=old)], fmt):
                assert _reads(_default_reader().read(frame), fmt), (seed, variant)


def _as_code(bc):
    from daemon.codes.reader import Code
    return Code(bc.format.name, bc.text, ((0.0, 0.0),) * 4)


def test_a_listed_format_set_reads_only_its_formats_with_the_full_search_as_old_configs_do():
    frame = code_scene("DataMatrix", SEED, "plain")
    assert CodeReader(["Code128", "QRCode"]).read(frame) == []
    assert _reads(CodeReader(["DataMatrix"]).read(frame), "DataMatrix")
    assert CodeReader([]).read(frame) == []
    # zxing-cpp's light-on-dark retry stays on for a list: a laser-marked DataMatrix is read when listed...
    marked = code_scene("DataMatrix", SEED, "inverted")
    assert _reads(CodeReader(["DataMatrix"]).read(marked), "DataMatrix")
    # ... and not by the default, whose bar-code pass goes without it (docs/codes-and-formats.md)
    assert not _reads(_default_reader().read(marked), "DataMatrix")


# GS1 data: element strings in (AI) form, parsed by biip, whichever symbology carries them.
GS1_SSCC = "(00)340123451234567895(17)261130"
GS1_GTIN = "(01)04006381333931(10)AB12(17)261130"


@pytest.mark.parametrize("fmt, content, ais", [
    ("Code128", GS1_SSCC, {"00": "340123451234567895", "17": "2026-11-30"}),                 # GS1-128
    ("DataMatrix", GS1_GTIN, {"01": "04006381333931", "10": "AB12", "17": "2026-11-30"}),    # GS1 DataMatrix
    ("QRCode", GS1_GTIN, {"01": "04006381333931", "10": "AB12", "17": "2026-11-30"}),        # GS1 QR
    ("Aztec", GS1_SSCC, {"00": "340123451234567895", "17": "2026-11-30"}),                   # GS1 Aztec
    ("DataBar", "0104006381333931", {"01": "04006381333931"}),                               # GS1 DataBar
    ("DataBarExpanded", GS1_GTIN, {"01": "04006381333931", "10": "AB12", "17": "2026-11-30"}),
    ("DataBarLimited", "0104006381333931", {"01": "04006381333931"}),
])
def test_gs1_data_is_parsed_and_confirms_the_printed_number_in_every_gs1_symbology(fmt, content, ais):
    codes = _default_reader().read(code_scene(fmt, SEED, "plain", content=content))
    [code] = [c for c in codes if config_name(c.format) == fmt]
    assert code.gs1 == ais and code.gs1_error is None
    key = next(iter(ais.values()))                         # the SSCC or GTIN, as printed beside the code
    printed = f"({next(iter(ais))}) {key}"
    [line], counts = match_codes([_line(printed)], [code])
    assert line.confirmed_by == "code" and counts[CONFIRMED] == 1
    misread = key[:-3] + ("1" if key[-3] != "1" else "2") + key[-2:]     # one digit misread by the OCR
    [line], _ = match_codes([_line(f"({next(iter(ais))}) {misread}")], [code])
    assert line.code_value == key


def test_a_gs1_code_with_a_bad_check_digit_is_reported_in_a_2d_symbology():
    codes = _default_reader().read(code_scene("DataMatrix", SEED, "plain", content="(00)340123451234567894"))
    [code] = [c for c in codes if c.format == "DataMatrix"]
    assert code.gs1 == {"00": "340123451234567894"} and "check digit" in code.gs1_error


@pytest.mark.parametrize("fmt", ["EAN13", "UPCA", "ITF"])
def test_a_retail_or_carton_code_confirms_the_gtin_printed_under_it(fmt):
    sample = FORMAT_SAMPLES[fmt]
    [code] = [c for c in _default_reader().read(code_scene(fmt, SEED, "plain")) if c.text == sample.text]
    [line], counts = match_codes([_line(sample.text)], [code])
    assert line.confirmed_by == "code" and counts[CONFIRMED] == 1


def test_the_reader_takes_a_grey_frame_as_well_as_a_colour_one():
    frame = code_scene("PDF417", SEED, "plain")
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    reader = _default_reader()
    assert [(c.format, c.text) for c in reader.read(grey)] == [(c.format, c.text) for c in reader.read(frame)]
    assert reader.read(np.full((960, 1280, 3), 200, np.uint8)) == []


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_format_read_becomes_resident_the_rest_is_searched_within_the_cpu_budget_and_it_is_forgotten():
    clock = _Clock()
    reader = _default_reader(clock)
    assert reader.resident() == ("Code128", "QRCode")
    assert _reads(reader.read(code_scene("DataMatrix", SEED, "plain")), "DataMatrix")     # searched: budget saved
    assert reader.resident() == ("Code128", "QRCode", "DataMatrix")
    blank = code_scene("Code128", SEED, "plain", content="EE123456785CN")
    for _ in range(500):                             # the clock stands still: searching spends the saved budget
        if reader.search_credit_ms <= 0:
            break
        reader.read(cv2.GaussianBlur(blank, (0, 0), 8))          # no code readable: a full search each time
    assert reader.search_credit_ms <= 0
    assert not _reads(reader.read(code_scene("EAN13", SEED, "plain")), "EAN13")   # not resident, no budget
    assert _reads(reader.read(code_scene("DataMatrix", SEED, "turned")), "DataMatrix")   # resident: read
    assert _reads(reader.read(code_scene("Code128", SEED, "turned")), "Code128")         # always read
    clock.now += 60.0                                # a minute later the budget has refilled
    assert _reads(reader.read(code_scene("EAN13", SEED, "plain")), "EAN13")
    assert set(reader.resident()) == {"Code128", "QRCode", "DataMatrix", "EAN13"}
    clock.now += reader_module.FORGET_AFTER_S + 1.0
    assert reader.resident() == ("Code128", "QRCode")


def test_the_search_slices_hold_every_format_once():
    names = [f for part in reader_module.SEARCH_SLICES for f in part]
    assert sorted(names) == sorted(CODE_FORMATS)


def test_a_listed_format_set_is_always_resident():
    assert CodeReader(["Code128", "QRCode"]).resident() == ("Code128", "QRCode")


def test_the_photographed_isbn_codes_are_read_by_default_as_by_every_format_at_once():
    # bench/photos-b/4_barcodes.jpg: four book backs, ISBN EAN-13 codes upright, turned and upside down
    photo = cv2.imread(str(Path(__file__).resolve().parents[1] / "bench" / "photos-b" / "4_barcodes.jpg"))
    every = {(config_name(b.format.name), b.text) for b in zxingcpp.read_barcodes(photo)}
    got = {(c.format, c.text) for c in _default_reader().read(photo)}
    assert got == every and {("EAN13", "9787564350840"), ("EAN13", "9783319200064")} <= got


def test_once_s_reader_searches_every_format_in_every_image_however_many_came_before():
    """`once` reads unrelated images: its reader does not learn, so a DataMatrix in the thousandth image is read
    as in the first, where a camera's reader, its search budget spent, finds only what it has seen lately."""
    from daemon.codes import CODE_FORMATS
    from daemon.codes.reader import CodeReader
    from daemon.samples.codes import code_scene

    frame = code_scene("DataMatrix", seed=5)
    blank = np.full((960, 1280, 3), 200, np.uint8)
    now = [0.0]   # a clock that stands still: the camera's search budget is spent and never refilled
    camera, once = CodeReader(CODE_FORMATS, clock=lambda: now[0]), CodeReader(CODE_FORMATS, learn=False)
    for _ in range(1000):
        if camera.search_credit_ms <= 0:
            break
        camera.read(blank)
    assert camera.search_credit_ms <= 0
    assert not once.learns and [c.format for c in once.read(frame)] == ["DataMatrix"]
    assert [c.format for c in camera.read(frame)] == []
