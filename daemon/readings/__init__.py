"""One path for every reading: a Lane per camera turns OCR'd frames into Readings (codes, filter, grouping: first,
consensus, or a read cycle), and one Recorder stores them (outbox row, commit, ack, evidence, review, page). See
lane.py, cycle.py and recorder.py."""
from __future__ import annotations

import os

from daemon.readings.cycle import CycleLane, cycle_rules
from daemon.readings.lane import Lane
from daemon.readings.reading import FrameContext, Reading
from daemon.readings.recorder import Recorder
from daemon.readings.triggers import TriggerBoard

__all__ = ["CycleLane", "FrameContext", "Lane", "Reading", "Recorder", "TriggerBoard", "make_lane", "refresh_boards",
           "wanted_frames"]


def refresh_boards(cfg, boards: dict) -> None:
    """In place: a trigger board per triggered camera of cfg. The running ones are kept (a reload keeps their
    counters and a waiting trigger), new ones made; cameras no longer triggered lose theirs."""
    kept = {cam.name: boards.get(cam.name) or TriggerBoard(cam.name) for cam in cfg.cameras
            if cam.mode == "triggered"}
    boards.clear()
    boards.update(kept)


def make_lane(cam, boards: dict, cfg) -> Lane:
    """The lane cam's config asks for: a read cycle for a triggered camera (its board from boards; its open-cycle
    marker beside the outbox, the daemon's other durable state), else codes, filter and first or consensus."""
    if cam.name in boards:
        cycles_dir = os.path.join(os.path.dirname(os.path.abspath(cfg.outbox.path)), "cycles")
        return CycleLane(cam, boards[cam.name], cycle_rules(cam, cfg.recipes), cycles_dir)
    return Lane(cam)


def wanted_frames(frames: list, lanes: dict) -> list:
    """The frames worth OCR; the others (an idle triggered camera's: it reads only when asked) are done with."""
    keep = []
    for frame in frames:
        lane = lanes.get(frame.camera)
        if lane is None or lane.wants(frame):
            keep.append(frame)
        else:
            frame.ack.done()
    return keep
