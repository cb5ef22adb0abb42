"""Joining the overlapping pieces of a long line: each piece's own characters, seams read once."""
import pytest

from daemon.ocr.line_join import Emission, PieceReading, join_line, join_line_chars

TOL = 12.0      # a quarter of a 48 px line height


def _r(keep, chars, space=False):
    """chars: (char, line column) pairs; probability 0.9 unless given as a third item."""
    return PieceReading(keep, space, tuple(Emission(c[0], float(c[1]), c[2] if len(c) > 2 else 0.9) for c in chars))


def test_one_piece_keeps_everything_it_read():
    assert join_line([_r((0, 200), [("A", 10), ("B", 30), ("C", 190)])], TOL) == ("ABC", pytest.approx(0.9))


def test_each_piece_keeps_only_the_characters_between_its_cuts():
    left = _r((0, 100), [("A", 20), ("B", 60), ("C", 110)])          # C lies in its right margin
    right = _r((100, 220), [("B", 62), ("C", 112), ("D", 160)])       # B lies in its left margin
    assert join_line([left, right], TOL)[0] == "ABCD"


def test_a_character_read_on_both_sides_of_the_cut_counts_once():
    left = _r((0, 100), [("A", 20), ("7", 96)])
    right = _r((100, 220), [("7", 103), ("8", 140)])
    assert join_line([left, right], TOL)[0] == "A78"


def test_two_real_neighbours_alike_at_a_cut_both_stay():
    # '55' with the cut between them: 24 px apart is two characters, not one read twice
    left = _r((0, 241), [("0", 204), ("5", 228), ("5", 252)])
    right = _r((241, 366), [("5", 229), ("5", 253), ("6", 277)])
    assert join_line([left, right], TOL)[0] == "0556"


def test_a_character_each_piece_put_on_the_others_side_is_kept_once():
    left = _r((0, 100), [("A", 20), ("-", 103, 0.8)])
    right = _r((100, 220), [("-", 98, 0.95), ("B", 140)])
    text, conf = join_line([left, right], TOL)
    assert text == "A-B" and conf == pytest.approx((0.9 + 0.95 + 0.9) / 3)


def test_word_gap_at_a_cut_becomes_one_space():
    left = _r((0, 100), [("A", 20)])
    right = _r((100, 220), [("B", 140)], space=True)
    assert join_line([left, right], TOL)[0] == "A B"
    right_with_space = _r((100, 220), [(" ", 104), ("B", 140)], space=True)
    assert join_line([left, right_with_space], TOL)[0] == "A B"


def test_nothing_read_is_empty_with_zero_confidence():
    assert join_line([_r((0, 100), []), _r((100, 200), [])], TOL) == ("", 0.0)


def test_each_character_of_the_joined_text_keeps_its_emission_and_runner_up():
    left = _r((0, 100), [("A", 20), ("7", 96)])
    right = PieceReading((100, 220), True, (Emission("7", 103, 0.9, "1", 0.05), Emission("B", 160, 0.6, "8", 0.4)))
    text, conf, chars = join_line_chars([left, right], TOL)
    assert text == "A7 B" and conf == join_line([left, right], TOL)[1]
    assert [(e.char, e.alt) for e in chars] == [("A", ""), ("7", ""), (" ", ""), ("B", "8")]
    assert chars[2].prob == 1.0 and chars[3].alt_prob == 0.4     # the space is the joiner's, not the network's
