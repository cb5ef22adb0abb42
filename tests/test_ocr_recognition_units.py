"""Pure parts of recognition: CTC decoding, fixed batches with padding, splitting of long lines."""
import numpy as np
import pytest

from daemon.ocr.ctc import ctc_greedy, ctc_greedy_batch
from daemon.ocr.rec_pre import fixed_batches, split_points, to_pieces

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


def test_ctc_batch_decodes_only_real_rows():
    batch = np.stack([_probs([1, 0, 2]), _probs([3, 3, 0]), _probs([0, 0, 0])])
    assert [t for t, _ in ctc_greedy_batch(batch, CHARSET, 2)] == ["ab", "c"]


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


def test_long_line_is_split_at_gaps_into_pieces_that_fit():
    line = _line_with_gaps([20] * 40, gap=6)            # 1040 px wide at height 48
    line[:2], line[-2:] = 255, 255                      # the unclip margin above and below the text
    pieces = to_pieces([line], 48, 320)
    assert len(pieces) >= 4
    assert all(p.image.shape[1] <= 320 for p in pieces)
    assert sum(p.image.shape[1] for p in pieces) == line.shape[1]     # nothing dropped
    for p in pieces[1:]:
        assert p.image[:, 0].min() == 255                # every cut fell in a gap, not in a character


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


def test_crop_of_another_height_keeps_its_aspect_in_the_slot():
    # the line classifier gets raw crops: 24 x 60 must become 48 x 120, not be stretched to 48 x 60
    crop = np.full((24, 60, 3), 255, dtype=np.uint8)
    (batch, _), = list(fixed_batches([crop], 1, 48, 192))
    assert np.all(batch[0, :, :, :120] == pytest.approx(1.0))
    assert np.all(batch[0, :, :, 120:] == 0.0)
    wide = np.full((24, 200, 3), 255, dtype=np.uint8)    # 48 x 400 after scaling: squeezed into 192
    (batch, _), = list(fixed_batches([wide], 1, 48, 192))
    assert np.all(batch[0] == pytest.approx(1.0))
