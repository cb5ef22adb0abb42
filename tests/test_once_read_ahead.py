"""`once` reads images ahead of the pipeline on one worker thread: in order, a bounded number ahead, and an
unreadable file still comes out in its place."""
import threading

import cv2
import numpy as np

from daemon.once import Loaded, load, read_ahead


def test_read_ahead_keeps_order_and_stays_within_its_depth():
    started: list[str] = []
    lock = threading.Lock()

    def load_one(path):
        with lock:
            started.append(path)
        return path.upper()

    paths = [f"img{i}" for i in range(12)]
    consumed = []
    for item in read_ahead(paths, load_one, depth=2):
        consumed.append(item)
        with lock:
            # the worker never starts more than `depth` images past the last one handed out
            assert len(started) <= len(consumed) + 2
    assert consumed == [p.upper() for p in paths]
    assert started == paths


def test_load_decodes_reads_codes_and_reports_an_unreadable_file(tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.full((40, 60, 3), 255, np.uint8))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")

    class Reader:
        def read(self, frame):
            return [f"code of {frame.shape[1]}x{frame.shape[0]}"]

    ok = load(str(good), Reader())
    assert ok.frame is not None and ok.frame.shape == (40, 60, 3)
    assert ok.codes == ("code of 60x40",) and ok.error == ""
    failed = load(str(bad), Reader())
    assert failed.frame is None and failed.codes == () and "bad.jpg" in failed.error
    assert isinstance(load(str(good), None), Loaded) and load(str(good), None).codes == ()
