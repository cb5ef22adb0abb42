"""The turned search learned per camera (daemon/codes/turns.py): a camera whose codes come upright searches its frames
turned only in watch frames, and in every frame again once a code comes turned. Real zxing-cpp on rendered labels
(daemon/samples/codes.py) for the reader; the rule itself is pure."""
import cv2

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


def test_a_turned_code_on_a_camera_that_read_upright_ones_is_read_in_a_watch_frame_then_in_every_frame():
    reader = _spent(CodeReader(CODE_FORMATS, clock=_Clock()))
    upright = code_scene("Code128", SEED, "plain", content="EE123456785CN")
    turned = code_scene("Code128", SEED, "turned", content="EE123456785CN")
    assert _reads_turned(reader, turned)             # nothing learned yet: every frame is searched turned
    reader = _spent(CodeReader(CODE_FORMATS, clock=_Clock()))
    for _ in range(turns.UPRIGHT_READS):
        assert _reads_turned(reader, upright)
    seen = [_reads_turned(reader, turned) for _ in range(turns.WATCH_EVERY)]
    assert seen.count(True) == 1                     # the watch frame among them, and only it
    assert all(_reads_turned(reader, turned) for _ in range(2 * turns.WATCH_EVERY))
    assert all(_reads_turned(reader, upright) for _ in range(2))


def test_a_list_of_formats_and_once_always_search_turned():
    turned = code_scene("Code128", SEED, "turned", content="EE123456785CN")
    listed, once = CodeReader(["Code128", "QRCode"]), CodeReader(CODE_FORMATS, learn=False)
    upright = code_scene("Code128", SEED, "plain", content="EE123456785CN")
    for _ in range(turns.UPRIGHT_READS):
        listed.read(upright)
        once.read(upright)
    assert all(_reads_turned(listed, turned) and _reads_turned(once, turned) for _ in range(turns.WATCH_EVERY))
