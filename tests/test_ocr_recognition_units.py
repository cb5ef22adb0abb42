"""Pure parts of recognition: CTC decoding, fixed batches with padding, splitting of long lines, packing
of short pieces into shared slots and the tail batch."""
import cv2
import numpy as np
import pytest

from daemon.ocr.ctc import ctc_greedy
from daemon.ocr.rec_pre import (Placement, batch_plan, fill_slots, fixed_batches, pack_slots, piece_steps,
                                split_points, to_pieces)

CHARSET = ["<blank>", "a", "b", "c", " "]


def _probs(indices, p=0.9):
    out = np.full((len(indices), len(CHARSET)), (1 - p) / (len(CHARSET) - 1), dtype=np.float32)
    out[np.arange(len(indices)), indices] = p
    return out


def test_ctc_collapses_repeats_and_removes_blanks():
    assert ctc_greedy(_probs([1, 1, 0, 1, 2, 2, 0, 0, 3]), CHARSET)[0] == "aabc"


def test_ctc_repeat_without_blank_is_one_character():
    assert ctc_greedy(_probs([2, 2, 2]), CHARSET)[0] == "b"


def test_ctc_all_blank_is_empty_with_zero_confidence():
    assert ctc_greedy(_probs([0, 0, 0, 0]), CHARSET) == ("", 0.0)


def test_ctc_confidence_is_mean_of_emitted_max_probabilities():
    probs = _probs([1, 0, 2])
    probs[0, 1], probs[2, 2] = 0.8, 0.6
    text, conf = ctc_greedy(probs, CHARSET)
    assert text == "ab" and conf == pytest.approx(0.7)


@pytest.mark.parametrize("n_images", [1, 7, 8, 9, 17, 24])
def test_every_image_lands_in_exactly_one_padded_batch(n_images):
    # each image is filled with its own grey level, so we can see where it went
    images = [np.full((48, 40 + i, 3), i + 1, dtype=np.uint8) for i in range(n_images)]
    seen = []
    for batch, idx in fixed_batches(images, 8, 48, 320):
        assert batch.shape == (8, 3, 48, 320)
        for slot, i in enumerate(idx):
            expected = (i + 1) / 127.5 - 1.0
            assert batch[slot, 0, 0, 0] == pytest.approx(expected, abs=1e-5)
            assert np.all(batch[slot, :, :, 40 + i:] == 0.0)   # right padding
        assert np.all(batch[len(idx):] == 0.0)                 # padded slots are empty
        seen.extend(idx)
    assert seen == list(range(n_images))


def _line_with_gaps(widths, gap, height=48):
    """A white line with black 'characters' of the given widths separated by gaps."""
    cols = []
    for w in widths:
        cols += [0] * w + [255] * gap
    line = np.array(cols, dtype=np.uint8)[None, :].repeat(height, axis=0)
    return np.dstack([line] * 3)


def test_long_line_is_cut_at_gaps_into_overlapping_pieces_that_fit():
    line = _line_with_gaps([20] * 40, gap=6)            # 1040 px wide at height 48
    line[:2], line[-2:] = 255, 255                      # the unclip margin above and below the text
    pieces = to_pieces([line], 48, 320)
    assert len(pieces) >= 4
    assert all(p.image.shape[1] <= 320 for p in pieces)
    # the keep ranges cover the line exactly once, left to right: no character is dropped or read twice
    assert pieces[0].keep[0] == 0 and pieces[-1].keep[1] == line.shape[1]
    assert all(a.keep[1] == b.keep[0] for a, b in zip(pieces, pieces[1:]))
    for p in pieces:
        # each piece shows its whole keep range plus half a line height beyond each inner cut
        assert p.offset <= p.keep[0] and p.offset + p.image.shape[1] >= p.keep[1]
        assert np.array_equal(p.image, line[:, p.offset:p.offset + p.image.shape[1]])
        if p.keep[0] > 0:
            assert p.keep[0] - p.offset == 24
            assert line[:, p.keep[0]].min() == 255          # every cut fell in a gap, not in a character


def test_word_gap_at_a_cut_becomes_a_space_and_letter_gap_does_not():
    ink = np.zeros(700)
    ink[:] = 0.5
    ink[280:300] = 0.0       # a word gap (20 px >= 0.2 * 48) inside the cut window
    cuts = split_points(ink, 320, 48)
    assert cuts[1][2] is True or cuts[1][2] == np.True_
    ink[:] = 0.5
    ink[290:293] = 0.0       # a letter gap
    cuts = split_points(ink, 320, 48)
    assert not cuts[1][2]
    assert all(end - start <= 320 for start, end, _ in cuts)


def test_short_line_is_one_piece():
    pieces = to_pieces([np.zeros((30, 90, 3), dtype=np.uint8)], 48, 320)
    assert len(pieces) == 1 and pieces[0].image.shape == (48, 144, 3)
    assert (pieces[0].offset, pieces[0].keep) == (0, (0, 144))


def test_crop_of_another_height_keeps_its_aspect_in_the_slot():
    # the line classifier gets raw crops: 24 x 60 must become 48 x 120, not be stretched to 48 x 60
    crop = np.full((24, 60, 3), 255, dtype=np.uint8)
    (batch, _), = list(fixed_batches([crop], 1, 48, 192))
    assert np.all(batch[0, :, :, :120] == pytest.approx(1.0))
    assert np.all(batch[0, :, :, 120:] == 0.0)
    wide = np.full((24, 200, 3), 255, dtype=np.uint8)    # 48 x 400 after scaling: squeezed into 192
    (batch, _), = list(fixed_batches([wide], 1, 48, 192))
    assert np.all(batch[0] == pytest.approx(1.0))


def test_a_crop_wider_than_the_classifier_input_is_squeezed_in_one_resize():
    # scaled to 48 high and then squeezed, a 12 px crop was interpolated twice and the 0/180 classifier, given
    # that blur, left a turned line of a real photograph upside down (bench/RESULTS.md section 37)
    rng = np.random.default_rng(7)
    crop = rng.integers(0, 256, (12, 59, 3), dtype=np.uint8)
    (batch, _), = list(fixed_batches([crop], 1, 48, 192))
    once = cv2.resize(crop, (192, 48), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 127.5 - 1.0
    assert np.abs(batch[0] - once.transpose(2, 0, 1)).max() < 1e-5


# ---- packing short pieces into shared slots ----

@pytest.mark.parametrize("seed", range(5))
def test_packing_places_every_piece_once_inside_the_slot_and_gap_apart(seed):
    rng = np.random.default_rng(seed)
    widths = [int(w) for w in rng.integers(1, 321, size=int(rng.integers(1, 40)))]
    slots = pack_slots(widths, 320, 24)
    placed = sorted(p.piece for slot in slots for p in slot)
    assert placed == list(range(len(widths)))
    for slot in slots:
        assert [p.x for p in slot] == sorted(p.x for p in slot)          # left to right
        assert slot[0].x == 0 and slot[-1].x + slot[-1].width <= 320
        for left, right in zip(slot, slot[1:]):
            assert right.x - (left.x + left.width) == 24
        assert all(p.width == widths[p.piece] for p in slot)
    assert len(slots) <= len(widths)


def test_packing_is_first_fit_widest_first():
    slots = pack_slots([300, 100, 100, 90, 40], 320, 24)
    assert [[(p.piece, p.x) for p in s] for s in slots] == [[(0, 0)], [(1, 0), (2, 124), (4, 248)], [(3, 0)]]


def test_without_packing_every_piece_has_its_own_slot_widest_first():
    slots = pack_slots([50, 300, 120], 320, None)
    assert [(s[0].piece, s[0].x) for s in slots] == [(1, 0), (2, 0), (0, 0)]


def test_packing_refuses_a_piece_wider_than_the_slot():
    with pytest.raises(ValueError, match="between 1 and 320"):
        pack_slots([321], 320, 24)


def test_each_piece_reads_the_output_steps_over_its_own_columns():
    slot = (Placement(0, 0, 100), Placement(1, 124, 80), Placement(2, 228, 60))
    ranges = piece_steps(slot, 320, 40)          # 8 px per step
    # 100 px -> steps 0-12 (the 13th half covers it); 124..204 -> 15-25; 228.. -> 28 to the end
    assert ranges == [(0, 13), (15, 26), (28, 40)]
    assert piece_steps((Placement(0, 0, 200),), 320, 40) == [(0, 40)]   # alone: the whole slot


def test_what_the_network_emits_inside_a_gap_belongs_to_neither_neighbour():
    # "ab" over the first piece, a stray "c" in the gap (steps 13-14), "ab" over the second, "c" over the third
    idx = [1, 1, 0, 2] + [0] * 9 + [3, 0] + [1, 2] + [0] * 11 + [0, 0] + [3] + [0] * 9
    assert len(idx) == 40
    probs = _probs(idx)
    slot = (Placement(0, 0, 100), Placement(1, 124, 80), Placement(2, 228, 60))
    texts = [ctc_greedy(probs[lo:hi], CHARSET)[0] for lo, hi in piece_steps(slot, 320, 40)]
    assert texts == ["ab", "ab", "c"]


@pytest.mark.parametrize("n, tail, expected", [
    (0, 2, []),
    (8, 2, [(8, 8)]),
    (9, 2, [(8, 8), (2, 1)]),
    (11, 2, [(8, 8), (2, 2), (2, 1)]),
    (13, 2, [(8, 8), (2, 2), (2, 2), (2, 1)]),
    (15, 2, [(8, 8), (8, 7)]),          # four tail calls (8 slots) cost no less than one of 8: not taken
    (15, 0, [(8, 8), (8, 7)]),          # tail off: the last call is padded
    (3, 4, [(4, 3)]),
])
def test_batch_plan_uses_the_tail_batch_only_when_it_saves_slots(n, tail, expected):
    plan = batch_plan(n, 8, tail)
    assert plan == expected
    assert sum(used for _, used in plan) == n


def test_fill_slots_writes_each_piece_at_its_column_and_zeros_the_rest():
    images = [np.full((48, w, 3), v, dtype=np.uint8) for w, v in ((100, 255), (80, 0), (200, 51))]
    slots = [(Placement(0, 0, 100), Placement(1, 124, 80)), (Placement(2, 0, 200),)]
    out = np.full((2, 3, 48, 320), 7.0, dtype=np.float32)
    fill_slots(images, slots, out)
    assert np.all(out[0, :, :, :100] == 1.0) and np.all(out[0, :, :, 124:204] == -1.0)
    assert np.all(out[0, :, :, 100:124] == 0.0) and np.all(out[0, :, :, 204:] == 0.0)
    assert np.allclose(out[1, :, :, :200], 51 / 127.5 - 1.0) and np.all(out[1, :, :, 200:] == 0.0)
