"""The CPU side's faster stages compute what the plain ones did, to the bit: the detector's letterbox into a
reused batch, and CTC decoding of a whole recognizer batch at once (on the real recognizer's outputs)."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon import config
from daemon.imageio import read_image
from daemon.ocr.crops import warp_crop
from daemon.ocr.ctc import ctc_candidates, ctc_candidates_batch
from daemon.ocr.db_post import boxes_from_prob
from daemon.ocr.det_pre import DET_MEAN, DET_STD, Letterboxer, letterbox_geometry, preprocess_det, to_frame_coords
from daemon.ocr.pipeline import OcrPipeline
from daemon.ocr.rec_pre import fill_slots, pack_slots, piece_steps, to_pieces

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "daemon" / "samples").glob("label_*.png"))


def _letterbox_as_written_first(frame, in_h, in_w):
    """The letterbox as it was first written: the whole frame to float, resized, normalized, transposed."""
    lb = letterbox_geometry(*frame.shape[:2], in_h, in_w)
    resized = cv2.resize(frame.astype(np.float32), (lb.new_w, lb.new_h), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((3, in_h, in_w), dtype=np.float32)
    out[:, : lb.new_h, : lb.new_w] = (resized * (1.0 / (255.0 * DET_STD)) - (DET_MEAN / DET_STD)).transpose(2, 0, 1)
    return out, lb


@pytest.mark.parametrize("shape", [(960, 1280, 3), (1080, 1920, 3), (480, 640, 3), (300, 200, 3), (2000, 700, 3)])
def test_letterbox_into_a_reused_batch_is_the_plain_letterbox_to_the_bit(shape):
    rng = np.random.default_rng(sum(shape))
    frame = rng.integers(0, 256, shape, dtype=np.uint8)
    want, want_lb = _letterbox_as_written_first(frame, 736, 960)
    got, lb = preprocess_det(frame, 736, 960)
    assert lb == want_lb and np.array_equal(got, want)
    roi = frame[7:-5, 3:-9]             # a camera ROI: a view, not contiguous
    letterbox = Letterboxer(2, 736, 960)
    batch, boxes = letterbox([frame, roi])
    assert np.array_equal(batch[0], want)
    assert np.array_equal(batch[1], _letterbox_as_written_first(np.ascontiguousarray(roi), 736, 960)[0])
    assert boxes[0] == want_lb


def test_a_reused_batch_holds_nothing_of_the_previous_frames():
    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, (960, 1280, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    letterbox = Letterboxer(2, 736, 960)
    letterbox([big, big])
    batch, _ = letterbox([small])
    assert np.array_equal(batch[0], _letterbox_as_written_first(small, 736, 960)[0])
    assert not batch[1].any()           # the slot this call left empty is zero again
    with pytest.raises(ValueError):
        letterbox([small] * 3)


@pytest.fixture(scope="module")
def pipeline():
    pipe = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime"}))
    yield pipe
    pipe.close()


def test_ctc_of_a_whole_batch_is_each_pieces_own_ctc_on_the_real_recognizer(pipeline):
    """Each sample's lines, through the real detector and recognizer in the pipeline's slots (packed pieces
    share a slot): the batch decode gives each piece exactly the arrays its own decode gives."""
    h, w = pipeline.cfg.rec_height, pipeline.cfg.rec_width
    checked = emitted = 0
    for path in SAMPLES:
        frame = read_image(path)
        probs_map, (lb,) = pipeline.det.run_frames([frame])
        found = boxes_from_prob(probs_map[0, 0, : lb.new_h, : lb.new_w], pipeline.db)
        crops = [warp_crop(frame, to_frame_coords(b.quad, lb, *frame.shape[:2])) for b in found]
        pieces = to_pieces(crops, h, w)
        slots = pack_slots([p.image.shape[1] for p in pieces], w, h // 2)
        for first in range(0, len(slots), pipeline.cfg.rec_batch):
            batch_slots = slots[first:first + pipeline.cfg.rec_batch]
            batch = np.zeros((pipeline.cfg.rec_batch, 3, h, w), dtype=np.float32)
            fill_slots([p.image for p in pieces], batch_slots, batch)
            probs = pipeline.rec.run1(batch)
            ranges = [(k, lo, hi) for k, slot in enumerate(batch_slots)
                      for lo, hi in piece_steps(slot, w, probs.shape[1])]
            for (k, lo, hi), got in zip(ranges, ctc_candidates_batch(probs, ranges), strict=True):
                want = ctc_candidates(probs[k, lo:hi])
                for g, x in zip(got, want, strict=True):
                    assert g.dtype == x.dtype and np.array_equal(g, x)
                checked += 1
                emitted += len(want[0])
    assert checked > 20 and emitted > 200       # the samples' lines, not a few empty pieces


def test_ctc_of_a_batch_with_nothing_emitted_and_empty_ranges():
    probs = np.zeros((2, 5, 4), dtype=np.float32)
    probs[..., 0] = 1.0                          # all blank
    assert ctc_candidates_batch(probs, []) == []
    for got, want in zip(ctc_candidates_batch(probs, [(0, 0, 5), (1, 2, 2)]),
                         [ctc_candidates(probs[0]), ctc_candidates(probs[1, 2:2])]):
        assert all(np.array_equal(g, x) for g, x in zip(got, want))
