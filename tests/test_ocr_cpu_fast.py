"""The CPU side's faster stages compute what the plain ones did, to the bit: the detector's letterbox into a
reused batch, the DB boxes ordered and scored without numpy's per-call overhead, the recognizer's slots zeroed only
where no piece lies, each line scaled once for the classifier and the recognizer, a recognizer batch's pieces
decoded in one pass, the reading order from all boxes at once."""
import cv2
import numpy as np
import pytest

from daemon.ocr.ctc import ctc_candidates_top3, ctc_candidates_top3_ranges
from daemon.ocr.db_post import box_score, order_quad
from daemon.ocr.det_pre import DET_MEAN, DET_STD, Letterboxer, letterbox_geometry, preprocess_det
from daemon.ocr.reading_order import reading_order
from daemon.ocr.rec_pre import (_normalize, classifier_inputs, fill_slots, fixed_batches, normalize_into, pack_slots,
                                resize_to_height, to_pieces)


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


def _order_quad_with_argsorts(points):
    """order_quad as it was first written, with numpy's stable argsorts."""
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def test_quads_are_ordered_as_the_argsorts_ordered_them_ties_included():
    rng = np.random.default_rng(31)
    quads = [rng.uniform(0, 100, (4, 2)).astype(np.float32) for _ in range(300)]
    quads += [rng.integers(0, 3, (4, 2)).astype(np.float32) for _ in range(300)]     # many equal x and y
    quads.append(np.array([[5, 5], [5, 5], [5, 5], [5, 5]], dtype=np.float32))
    for q in quads:
        got = order_quad(q)
        assert got.dtype == np.float32 and np.array_equal(got, _order_quad_with_argsorts(q)), q


def test_box_score_takes_the_same_window_as_with_numpy_clips():
    rng = np.random.default_rng(32)
    prob = rng.uniform(0, 1, (60, 80)).astype(np.float32)
    for _ in range(200):
        quad = rng.uniform(-20, 100, (4, 2)).astype(np.float32)
        q = quad.copy()
        xmin = int(np.clip(np.floor(q[:, 0].min()), 0, 79))
        xmax = int(np.clip(np.ceil(q[:, 0].max()), 0, 79))
        ymin = int(np.clip(np.floor(q[:, 1].min()), 0, 59))
        ymax = int(np.clip(np.ceil(q[:, 1].max()), 0, 59))
        mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
        q[:, 0] -= xmin
        q[:, 1] -= ymin
        cv2.fillPoly(mask, [q.round().astype(np.int32)], 1)
        assert box_score(prob, quad) == float(cv2.mean(prob[ymin:ymax + 1, xmin:xmax + 1], mask)[0])


@pytest.mark.parametrize("seed", range(6))
def test_slots_zeroed_around_their_pieces_are_the_slots_zeroed_first_to_the_bit(seed):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (48, int(w), 3), dtype=np.uint8) for w in rng.integers(8, 320, rng.integers(1, 12))]
    slots = pack_slots([im.shape[1] for im in images], 320, 24 if seed % 2 else None)[:8]
    got = rng.normal(size=(8, 3, 48, 320)).astype(np.float32)     # what the previous batch left
    fill_slots(images, slots, got)
    want = np.zeros((8, 3, 48, 320), np.float32)
    for k, slot in enumerate(slots):
        for p in slot:
            _normalize(images[p.piece], want[k], p.x)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))    # +0.0 where nothing lies, as before
    one = rng.normal(size=(3, 48, 192)).astype(np.float32)
    normalize_into(images[0], one)
    alone = np.zeros((3, 48, 192), np.float32)
    squeezed = images[0] if images[0].shape[1] <= 192 else cv2.resize(images[0], (192, 48),
                                                                         interpolation=cv2.INTER_LINEAR)
    _normalize(squeezed, alone, 0)
    assert np.array_equal(one.view(np.uint32), alone.view(np.uint32))


def test_a_line_scaled_once_feeds_the_classifier_and_the_recognizer_as_its_crop_did():
    """OpenCV's resize to the same size is a copy, so a line already at the height is what scaling its crop gave;
    a line wider than the classifier's input is shown to it as its crop (squeezed in one resize)."""
    rng = np.random.default_rng(7)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((31, 400), (48, 90), (70, 1500), (20, 15))]
    lines = [resize_to_height(c, 48) for c in crops]
    for a, b in zip(to_pieces(crops, 48, 320), to_pieces(lines, 48, 320)):
        assert (a.crop_index, a.offset, a.keep, a.space_before) == (b.crop_index, b.offset, b.keep, b.space_before)
        assert np.array_equal(a.image, b.image)
    shown = classifier_inputs(crops, lines, 192)
    assert [s is line for s, line in zip(shown, lines)] == [False, True, False, True]   # 620 and 1029 wide: crops
    for (a, _), (b, _) in zip(fixed_batches(crops, 8, 48, 192), fixed_batches(shown, 8, 48, 192)):
        assert np.array_equal(a, b)


def _top3_batch(rng, n=8, t=40, classes=50):
    """A recognizer batch's top-3 head outputs: each step's three most probable classes, best first, some ties."""
    probs = rng.dirichlet(np.full(classes, 0.05), size=(n, t)).astype(np.float32)
    probs[:, ::3, 0] += 0.5                                      # blank runs, as CTC outputs have
    probs[rng.uniform(size=(n, t)) < 0.1, 5:7] = 0.4             # equal values: ties between classes 5 and 6
    order = np.lexsort((np.broadcast_to(np.arange(classes), probs.shape), -probs), axis=-1)[..., :3]
    values, classes = np.take_along_axis(probs, order, axis=-1).astype(np.float32), order.astype(np.int32)
    values[:, 1::2], classes[:, 1::2] = values[:, ::2], classes[:, ::2]   # each class held two steps: repeats
    return values, classes


@pytest.mark.parametrize("seed", range(8))
def test_a_batch_decoded_at_once_is_each_piece_decoded_alone(seed):
    rng = np.random.default_rng(seed)
    values, classes = _top3_batch(rng)
    ranges = []
    for k in range(8):                       # pieces side by side with gaps, some empty, some a whole slot
        lo = 0
        while lo < 40:
            hi = min(40, lo + int(rng.integers(0, 20)))
            ranges.append((k, lo, hi))
            lo = hi + int(rng.integers(0, 4))
    want = [(idx.tolist(), (steps + lo).tolist(), p.tolist(), alt.tolist(), alt_p.tolist())
            for k, lo, hi in ranges
            for idx, steps, p, alt, alt_p in [ctc_candidates_top3(values[k, lo:hi], classes[k, lo:hi])]]
    assert ctc_candidates_top3_ranges(values, classes, ranges) == want
    overlapping = [(0, 0, 12), (0, 10, 30), (1, 5, 5), (1, 0, 40)]
    assert ctc_candidates_top3_ranges(values, classes, overlapping) == [
        (idx.tolist(), (steps + lo).tolist(), p.tolist(), alt.tolist(), alt_p.tolist())
        for k, lo, hi in overlapping
        for idx, steps, p, alt, alt_p in [ctc_candidates_top3(values[k, lo:hi], classes[k, lo:hi])]]


def _reading_order_quad_by_quad(quads):
    """reading_order as first written: each quad's centre, left edge and height by numpy calls of its own."""
    centers = [(float(np.mean(q[:, 1])), float(np.min(q[:, 0])), float(np.ptp(q[:, 1]))) for q in quads]
    order = sorted(range(len(quads)), key=lambda i: (centers[i][0], centers[i][1]))
    lines = []
    for i in order:
        if lines and abs(centers[i][0] - centers[lines[-1][-1]][0]) <= 0.5 * max(
                1.0, min(centers[i][2], centers[lines[-1][-1]][2])):
            lines[-1].append(i)
        else:
            lines.append([i])
    return [i for line in lines for i in sorted(line, key=lambda j: centers[j][1])]


def test_reading_order_from_all_quads_at_once_is_the_order_quad_by_quad():
    rng = np.random.default_rng(39)
    for trial in range(2000):
        quads = [rng.uniform(0, (1, 100, 1280)[trial % 3], (4, 2)).astype(np.float32)
                 for _ in range(int(rng.integers(1, 25)))]
        if trial % 4 == 0:
            quads = [np.round(q) for q in quads]          # equal centres: ties in the sort
        if trial % 7 == 0:
            quads = [q.astype(np.float64) for q in quads]
        assert reading_order(quads) == _reading_order_quad_by_quad(quads)
