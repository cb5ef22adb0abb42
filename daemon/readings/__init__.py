"""One path for every reading: a Lane per camera turns OCR'd frames into Readings (codes, filter, grouping: first,
consensus, or a read cycle), and one Recorder stores them (outbox row, commit, ack, evidence, review, page). See
lane.py, cycle.py and recorder.py."""
from __future__ import annotations

import os

from daemon.readings.cycle import CycleLane, cycle_rules
from daemon.readings.lane import Lane
from daemon.readings.reading import FrameContext, Reading
from daemon.readings.recipe_memory import keep_selected, recipe_path, remembered
from daemon.readings.recorder import Recorder
from daemon.readings.triggers import TriggerBoard

__all__ = ["CycleLane", "FrameContext", "Lane", "Reading", "Recorder", "TriggerBoard", "close_boards", "make_lane",
           "refresh_boards", "tell_boards", "wanted_frames"]


def cycles_dir(cfg) -> str:
    """Where read cycles keep their durable state (open-cycle markers, active recipes): beside the outbox."""
    return os.path.join(os.path.dirname(os.path.abspath(cfg.outbox.path)), "cycles")


def refresh_boards(cfg, boards: dict) -> None:
    """In place: a trigger board per triggered camera of cfg. The running ones are kept (a reload keeps their
    counters, a waiting trigger and the active recipe while it still exists), new ones made with the recipe last
    selected before a restart (daemon/readings/recipe_memory.py); cameras no longer triggered lose theirs."""
    names = [r.name for r in cfg.recipes]
    kept = {}
    for cam in cfg.cameras:
        if cam.mode != "triggered":
            continue
        board = boards.get(cam.name)
        if board is not None:
            board.set_recipes(names, cam.recipe)
        else:
            path = recipe_path(cycles_dir(cfg), cam.name)
            # not streaming until tell_boards sees it stream: the sinks serve PLCs before the camera opens
            board = TriggerBoard(cam.name, names, remembered(path, names, cam.recipe),
                                 camera_error="the camera is not running yet")
            keep_selected(board, path)
        kept[cam.name] = board
    boards.clear()
    boards.update(kept)


def tell_boards(boards: dict, sources: dict) -> None:
    """Each triggered camera's board learns whether its camera streams (the protocols show it as an error)."""
    for name, board in list(boards.items()):
        src = sources.get(name)
        health = src.health() if src is not None else None
        if health is None:
            board.set_camera_error("the camera is not running")
        elif health.state != "streaming":
            board.set_camera_error(f"the camera is {health.state}" + (f": {health.error}" if health.error else ""))
        else:
            board.set_camera_error(None)


def close_boards(boards: dict, why: str) -> None:
    """A stop begins: every board refuses triggers from now on (TriggerBoard.close)."""
    for board in list(boards.values()):
        board.close(why)


def make_lane(cam, boards: dict, cfg) -> Lane:
    """The lane cam's config asks for: a read cycle for a triggered camera (its board from boards; its open-cycle
    marker beside the outbox, the daemon's other durable state), else codes, filter and first or consensus."""
    if cam.name in boards:
        return CycleLane(cam, boards[cam.name], cycle_rules(cam, cfg.recipes), cycles_dir(cfg))
    return Lane(cam)


def wanted_frames(frames: list, lanes: dict) -> list:
    """The frames worth OCR, each as its lane reads it (a recipe's roi); the others (an idle triggered camera's: it
    reads only when asked) are done with."""
    keep = []
    for frame in frames:
        lane = lanes.get(frame.camera)
        seen = frame if lane is None else (lane.view(frame) if lane.wants(frame) else None)
        if seen is not None:
            keep.append(seen)
        else:
            frame.ack.done()
    return keep
