"""The shipped INT8 copies of detectors (daemon/models/, written by daemon.quantize.cpu_int8), found by the
sha256 of the file they were made from.

A copy runs only in place of exactly that file: a detector replaced by another of the same name (a newer
wheel, a site's own model) runs in FP32 with one warning that names the command which makes its copy.
Hashing the detector costs a little start-up time, once.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "models"
SUFFIX = ".cpu-int8.onnx"
SIDECAR_SUFFIX = ".cpu-int8.json"


@dataclass(frozen=True)
class CopyState:
    path: Path | None     # the copy to run; None: run the source in FP32
    state: str            # "int8 copy", "no copy shipped", "stale copy", "unreadable copy"
    detail: str = ""      # for a stale or unreadable copy: what is wrong and which command fixes it
    rebuild: str = ""     # that command


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def copy_paths(source_name: str, directory: Path | None = None) -> tuple[Path, Path]:
    """(model, sidecar) of the INT8 copy of the ONNX file named ``source_name`` (default: the shipped ones)."""
    stem, directory = Path(source_name).stem, directory or SHIPPED_DIR
    return directory / f"{stem}{SUFFIX}", directory / f"{stem}{SIDECAR_SUFFIX}"


def find_copy(source: Path, directory: Path | None = None) -> CopyState:
    """The INT8 copy that may run in place of ``source``, or why none may; reads files, loads no model."""
    model, sidecar = copy_paths(source.name, directory)
    if not sidecar.is_file():
        return CopyState(None, "no copy shipped")
    rebuild = f"python -m daemon.quantize.cpu_int8 {source}"
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        made_from, own = str(meta["source_sha256"]), str(meta["sha256"])
        if not model.is_file():
            return CopyState(None, "unreadable copy", f"{model} is missing; `{rebuild}` writes it", rebuild)
        if sha256_of(model) != own:
            return CopyState(None, "unreadable copy", f"{model} does not match its sidecar; `{rebuild}` rewrites it",
                             rebuild)
        if sha256_of(source) != made_from:
            return CopyState(None, "stale copy",
                             f"{model} was made from another {source.name} (sha256 {made_from[:12]}); "
                             f"`{rebuild}` makes one for this file", rebuild)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return CopyState(None, "unreadable copy", f"{sidecar}: {exc}; `{rebuild}` rewrites it", rebuild)
    return CopyState(model, "int8 copy")


def int8_copy(source: Path, directory: Path | None = None) -> Path | None:
    """The copy to load for ``source``, or None (with one warning when a copy exists but may not run)."""
    found = find_copy(source, directory)
    if found.detail:
        log.warning("the detector runs in FP32: %s", found.detail)
    return found.path
