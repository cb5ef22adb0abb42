"""User patterns (accept_patterns, expect_regex) are matched by RE2, in time linear in the line: a pattern that
backtracks in Python's re ("((.+)+)+X") once froze the whole daemon, /healthz included, on its first frame."""
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.patterns import PatternError, compile_pattern

ROOT = Path(__file__).resolve().parent.parent

_FILTER = """
import sys; sys.path.insert(0, {root!r})
from daemon.config import CameraConfig
from daemon.ocr.results import TextLine
from daemon.readings.results_filter import FilterRules, ResultFilter
from daemon.readings.verify import Expectation, verify
cam = CameraConfig(name="c", kind="sample", accept_patterns=("((.+)+)+X",))
line = TextLine("A" * 200, 0.99, ((0, 0), (10, 0), (10, 5), (0, 5)))
decision = ResultFilter(FilterRules.from_camera(cam)).decide([line], 0.0, [])
v = verify(Expectation(regex="((.+)+)+X"), [line])
print(len(decision.lines), v.verdict)
"""


def test_a_backtracking_pattern_decides_a_long_line_at_once():
    # With re, each of these takes longer than the test run (0.5 s at 24 characters, doubling with each more).
    out = subprocess.run([sys.executable, "-c", _FILTER.format(root=str(ROOT))], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "mismatch"]         # the line is refused, and not what was expected


def test_python_re_syntax_a_line_filter_uses_compiles_and_what_re2_lacks_is_refused_with_why():
    p = compile_pattern(r"(?P<lot>L\d{6})|SF\d{10}|[A-Z]{2}\d{9}[A-Z]{2}")
    assert p.fullmatch("L123456") and p.fullmatch("SF7300000000") and not p.fullmatch("L12345")
    assert compile_pattern(r"É\d+").fullmatch("É42")                # not ASCII
    for bad in (r"(?=LOT)L.*", r"(a)\1", r"(?<!x)y", "[unclosed"):
        with pytest.raises(PatternError, match="RE2"):
            compile_pattern(bad)
