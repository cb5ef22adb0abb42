"""The code pool reads each frame's codes beside its OCR and gives the loop exactly what the lane reads inline:
real zxing-cpp on rendered labels with a Code 128 or a QR code, and on a frame with none."""
import numpy as np
import pytest

from daemon import config
from daemon.readings.code_pool import CodePool
from daemon.readings.lane import Lane
from daemon.samples.codes import code_label
from daemon.sources import Frame


def _lane(codes=("Code128", "QRCode")) -> Lane:
    cfg = config.from_dict({"backend": "onnxruntime",
                            "cameras": [{"name": "belt", "kind": "sample", "codes": list(codes)}]})
    return Lane(cfg.cameras[0])


@pytest.fixture(scope="module")
def frames():
    images = [code_label(f"LABEL {i}", content, fmt) for i, (fmt, content) in
              enumerate((("Code128", "RR123456785CH"), ("QRCode", "YT0852453935048"), ("Code128", "JD014600006812")))]
    images.append(np.full((480, 640, 3), 200, dtype=np.uint8))        # no code at all
    return [Frame(camera="belt", image=im, captured_at=0.0) for im in images]


def test_codes_started_at_submit_are_what_the_lane_reads_inline(frames):
    lane = _lane()
    pool = CodePool()
    try:
        pool.start(frames, {"belt": lane})
        got = [pool.result(lane, f) for f in frames]
    finally:
        pool.close()
    want = [lane.read_codes(f.image) for f in frames]
    assert [codes for codes, _ in got] == [codes for codes, _ in want]
    assert sum(len(codes) for codes, _ in got) >= 3          # the three labels' codes were read
    assert all(ms is not None and ms >= 0 for _, ms in got)


def test_a_frame_not_started_or_of_a_camera_without_codes_is_read_inline(frames):
    lane, no_codes = _lane(), _lane(codes=())
    pool = CodePool()
    try:
        pool.start(frames[:1], {"belt": no_codes})            # nothing to start: that camera reads no codes
        assert pool.result(no_codes, frames[0]) == ([], None)
        assert pool.result(lane, frames[1])[0] == lane.read_codes(frames[1].image)[0]   # never started
        pool.start(frames[2:3], {"other camera": lane})        # a camera removed by a reload: not started
        assert pool.result(lane, frames[2])[0] == lane.read_codes(frames[2].image)[0]
    finally:
        pool.close()


def test_codes_nobody_took_are_dropped_two_starts_later_and_a_dropped_frame_is_still_read(frames):
    """A frame whose OCR failed never has its codes taken: the start after next drops them (the loop has taken every
    batch's codes but the last one's by then); asked for after all, its codes are read inline."""
    lane = _lane()
    pool = CodePool()
    try:
        failed, overlapping, next_one = ([Frame(camera="belt", image=frames[i].image, captured_at=float(i))]
                                         for i in range(3))
        pool.start(failed, {"belt": lane})
        pool.start(overlapping, {"belt": lane})    # with overlap, this batch is handled after the next submit
        pool.start(next_one, {"belt": lane})       # drops the failed frame's read, keeps the overlapping one's
        for batch, image in ((failed, frames[0].image), (overlapping, frames[1].image), (next_one, frames[2].image)):
            assert pool.result(lane, batch[0])[0] == lane.read_codes(image)[0]
    finally:
        pool.close()
