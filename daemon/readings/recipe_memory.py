"""The active recipe of each triggered camera, kept across restarts: ``<state dir>/cycles/<camera>.recipe.json``.

A PLC selects a product's recipe once per changeover, not with every trigger; a daemon restart in the middle of a
run must come back judging by that recipe, not silently by the camera's configured one. The file is written
(atomically) each time the active recipe changes and read when the board is made; a file that names a recipe no
longer in the config is ignored (the camera's configured one applies, and the log says so).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Optional

from daemon.atomic_write import write_atomic

log = logging.getLogger(__name__)

_MAX_BYTES = 4096


def recipe_path(state_dir: str, camera: str) -> str:
    return os.path.join(state_dir, f"{camera}.recipe.json")


def remembered(path: str, recipes, default: Optional[str]) -> Optional[str]:
    """The recipe saved at path if it is still one of recipes; else default."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(_MAX_BYTES))
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        log.warning("the active recipe in %s cannot be read (%s); the configured one applies", path, exc)
        return default
    if not isinstance(doc, dict) or "recipe" not in doc:
        log.warning("%s does not name an active recipe; the configured one applies", path)
        return default
    name = doc["recipe"]
    if name is None or name in recipes:   # null: none was selected (the camera's own expectation)
        return name
    log.warning("the active recipe saved in %s, %r, is no longer in the config; the configured one applies",
                path, str(name)[:64])
    return default


def keep_selected(board, path: str) -> None:
    """From now on each change of board's active recipe is written to path (in the selecting thread: a small
    atomic write)."""
    last = [board.state().recipe]

    def save(state) -> None:
        if state.recipe == last[0]:
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomic(path, json.dumps({"recipe": state.recipe}).encode())
            last[0] = state.recipe
        except OSError as exc:   # the selection holds until a restart; after one the configured recipe applies
            log.error("%s: cannot save the active recipe to %s (%s): a restart would go back to the configured one",
                      board.camera, path, exc)
    board.subscribe(save)
