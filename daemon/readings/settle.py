"""Settled labels: which frames of a voting camera need no code search, and which no reading at all.

A label followed across frames (daemon/readings/consensus.py) has its codes settled once it has a code and two of
its frames were searched, and its text settled once each of its lines was read alike twice and in most of its
readings (``LabelTracker.settled``). A later frame whose label outlines all lie where such labels are predicted adds
little to their votes: ``cameras[].codes_settle`` leaves out its code search, ``cameras[].text_settle`` leaves its
text unread (no DB post-processing, crops or recognizer: the tracker keeps the labels in view by their outlines,
and codes found on them join them). One frame in ``code_watch`` is searched and one in ``text_watch`` read all the
same (a label's second code, a line that reads otherwise, something off the outlines), and a frame with an
unsettled label, or one still coming into view at the frame's edge, is searched and read at once.

Pure apart from two counts of frames left out in a row. The work loop's thread calls all three: ``search`` as soon as
it has a frame's outlines, when it submits the frame (which may be before the frame ahead of it was voted on),
``read`` before post-processing one and ``update`` after each frame.
"""
from __future__ import annotations

from typing import Sequence

from daemon.readings.consensus import (SETTLED_IOU, TEXT_SETTLED_IOU, LabelTracker, LookedOutlines, Outlines, Rect,
                                       SettledLabel, predicted_overlap)


def all_settled(outlines: LookedOutlines, settled: Sequence[SettledLabel], in_view: bool = False,
                min_iou: float = SETTLED_IOU) -> bool:
    """Whether every label the frame's outlines show is one of ``settled``: each outline lies where such a
    label's motion puts it one to SETTLED_STEPS frames on (IoU at least min_iou). False where there are no
    outlines to judge by (none looked for, none found, an empty belt): then the frame is searched and read.
    in_view: and no such label is still coming into view (touching the frame's edge it moves away from: more of
    its lines may show in a later frame; one leaving view shows none)."""
    if not isinstance(outlines, Outlines) or not outlines.rects or not settled:
        return False
    return all(any(predicted_overlap(rect, s.rect, s.vx, s.vy) >= min_iou
                   and not (in_view and _coming_in(rect, s, outlines)) for s in settled)
               for rect in outlines.rects.values())


# A label moving less than this many pixels a frame along an axis may come into view from either side of it.
STILL_PX = 0.5


def _coming_in(rect: Rect, label: SettledLabel, outlines: Outlines) -> bool:
    """Whether the label at rect touches an edge of the frame that it moves away from (or an edge along an axis it
    does not move on)."""
    h, w = outlines.ids.shape
    right, bottom = w * outlines.scale, h * outlines.scale
    return ((rect[0] <= 0 and label.vx > -STILL_PX) or (rect[2] >= right and label.vx < STILL_PX)
            or (rect[1] <= 0 and label.vy > -STILL_PX) or (rect[3] >= bottom and label.vy < STILL_PX))


class _Watch:
    """The count of frames left out in a row: a frame whose labels are settled is left out, but for one in `every`,
    which is searched or read all the same."""

    def __init__(self, every: int):
        self.every = every
        self.left_out = 0

    def leave_out(self, settled: bool) -> bool:
        self.left_out = self.left_out + 1 if settled and self.left_out + 1 < self.every else 0
        return self.left_out > 0


class SettledLabels:
    """One voting camera's rule. codes: the camera reads codes and leaves the frames of labels whose codes settled
    unsearched (codes_settle); text: it leaves the frames of labels whose text settled unread (text_settle)."""

    def __init__(self, code_watch: int = 3, text_watch: int = 4, codes: bool = True, text: bool = False):
        self.codes = codes
        self.text = text
        self._settled: tuple[SettledLabel, ...] = ()
        self._unsearched = _Watch(code_watch)   # code searches left out in a row
        self._unread = _Watch(text_watch)       # frames left unread in a row

    def update(self, tracker: LabelTracker) -> None:
        self._settled = tracker.settled()

    def search(self, outlines: LookedOutlines) -> bool:
        """Whether to search the frame with these outlines for codes. Counted: call once a frame."""
        if not self.codes:
            return True
        return not self._unsearched.leave_out(all_settled(outlines, [s for s in self._settled if s.codes]))

    def read(self, outlines: LookedOutlines) -> bool:
        """Whether to read the text of the frame with these outlines. Counted: call once a frame."""
        if not self.text:
            return True
        settled = all_settled(outlines, [s for s in self._settled if s.text], in_view=True, min_iou=TEXT_SETTLED_IOU)
        return not self._unread.leave_out(settled)
