"""One path for every reading: a Lane per camera turns OCR'd frames into Readings (codes, filter, grouping), and
one Recorder stores them (outbox row, commit, ack, evidence, review, page). See lane.py and recorder.py."""
from daemon.readings.lane import Lane
from daemon.readings.reading import FrameContext, Reading
from daemon.readings.recorder import Recorder

__all__ = ["FrameContext", "Lane", "Reading", "Recorder"]
