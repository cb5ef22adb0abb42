"""The turned search learned per camera (daemon/codes/turns.py): a camera whose codes come upright searches its frames
turned only in watch frames, and in every frame again once a code comes turned. Real zxing-cpp on rendered labels
(daemon/samples/codes.py) for the reader; the rule itself is pure."""
import cv2
import numpy as np

from daemon.codes import CODE_FORMATS
from daemon.codes import turns
from daemon.codes.reader import CodeReader
from daemon.codes.turns import TurnedSearch, read_upright
from daemon.samples.codes import code_scene

SEED = 102


def test_bar_codes_read_along_rows_are_upright_either_way_a_datamatrix_only_near_its_own_angle():
    assert read_upright("Code128", 0) and read_upright("Code128", 180) and read_upright("PDF417", -180)
    assert not read_upright("Code128", 90) and not read_upright("EAN13", -90) and not read_upright("PDF417", 90)
    assert read_upright("DataMatrix", -15) and not read_upright("DataMatrix", -50)
    assert not read_upright("DataMatrix", 180)       # read only by the turned search


def test_the_turned_search_runs_in_every_frame_until_codes_came_upright_then_in_watch_frames():
    search = TurnedSearch(forget_after_s=600.0)
    for now in range(turns.UPRIGHT_READS):
        assert search.due(float(now))
        search.saw("Code128", 0.0, float(now))
    due = [search.due(10.0 + k) for k in range(4 * turns.WATCH_EVERY)]
    assert due.count(True) == 4 and all(any(due[k:k + turns.WATCH_EVERY]) for k in range(len(due) - 2))
    search.saw("Code128", 90.0, 30.0)                 # read turned: every frame again ...
    assert all(search.due(30.0 + k) for k in range(10))
    assert not all(search.due(631.0 + k) for k in range(turns.WATCH_EVERY))   # ... until it is forgotten


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _spent(reader: CodeReader) -> CodeReader:
    """The reader with its saved-up search spent (the clock stands still), so each frame gets the resident search."""
    blurred = cv2.GaussianBlur(code_scene("Code128", SEED, "plain", content="EE123456785CN"), (0, 0), 8)
    for _ in range(1000):
        if reader.search_credit_ms <= 0:
            return reader
        reader.read(blurred)
    raise AssertionError("the search credit was never spent")


def _reads_turned(reader: CodeReader, frame) -> bool:
    return any(c.text == "EE123456785CN" for c in reader.read(frame))


def test_a_turned_code_on_a_camera_that_read_upright_ones_is_read_within_a_watch_then_in_every_frame():
    reader = _spent(CodeReader(CODE_FORMATS, clock=_Clock()))
    upright = code_scene("Code128", SEED, "plain", content="EE123456785CN")
    turned = code_scene("Code128", SEED, "turned", content="EE123456785CN")
    assert _reads_turned(reader, turned)             # nothing learned yet: every frame is searched turned
    reader = _spent(CodeReader(CODE_FORMATS, clock=_Clock()))
    for _ in range(turns.UPRIGHT_READS):
        assert _reads_turned(reader, upright)
    waited = next(k for k in range(1, turns.WATCH_EVERY + 1) if _reads_turned(reader, turned))
    assert waited <= turns.WATCH_EVERY               # read in the watch frame at the latest ...
    assert all(_reads_turned(reader, turned) for _ in range(2 * turns.WATCH_EVERY))   # ... then in every frame
    assert all(_reads_turned(reader, upright) for _ in range(2))


def test_a_camera_whose_codes_came_upright_asks_for_the_turned_search_in_one_frame_of_every_few(monkeypatch):
    import zxingcpp
    reader = _spent(CodeReader(CODE_FORMATS, clock=_Clock()))
    asked: list[bool] = []
    read = zxingcpp.read_barcodes

    def spy(image, formats, **options):
        if options.get("try_invert") is False:       # the bar-code search of a frame (QR: its own call)
            asked.append(options["try_rotate"])
        return read(image, formats=formats, **options)
    monkeypatch.setattr(zxingcpp, "read_barcodes", spy)
    upright = code_scene("Code128", SEED, "plain", content="EE123456785CN")
    for _ in range(turns.UPRIGHT_READS):
        reader.read(upright)
    assert asked == [True] * turns.UPRIGHT_READS     # until codes came upright: every frame
    asked.clear()
    blank = np.full((960, 1280, 3), 200, np.uint8)
    for _ in range(4 * turns.WATCH_EVERY):
        reader.read(blank)
    assert asked.count(True) == 4 and all(any(asked[k:k + turns.WATCH_EVERY]) for k in range(len(asked) - 2))


def test_a_list_of_formats_and_once_always_search_turned():
    turned = code_scene("Code128", SEED, "turned", content="EE123456785CN")
    listed, once = CodeReader(["Code128", "QRCode"]), CodeReader(CODE_FORMATS, learn=False)
    upright = code_scene("Code128", SEED, "plain", content="EE123456785CN")
    for _ in range(turns.UPRIGHT_READS):
        listed.read(upright)
        once.read(upright)
    assert all(_reads_turned(listed, turned) and _reads_turned(once, turned) for _ in range(turns.WATCH_EVERY))
