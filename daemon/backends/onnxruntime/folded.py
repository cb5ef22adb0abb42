"""The CPU's folded copy of a model file (fold.py), written once into a cache directory and reused.

Folding needs the onnx package, whose import alone is a noticeable part of start-up (bench/RESULTS.md
section 17b), so it runs once per model file. The copy is named after the source's absolute path, size and
modification time (as Python keys its .pyc files) and the fold version: a replaced model or a changed
rewrite makes a new file, and nothing depends on the ONNX Runtime version or the CPU (it is plain ONNX,
unlike ONNX Runtime's own optimized models, which go stale with both). A model with nothing to fold leaves
an empty marker, so it is not read again on every start. Whatever goes wrong here, the daemon runs the
model as shipped and says so.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Mapping

log = logging.getLogger(__name__)

FOLD_VERSION = 1


def default_dir(environ: Mapping[str, str], engines_dir: str) -> Path:
    """Where the copies go when ocr.cpu_fold_dir is null. They are a cache (made again from the model
    files whenever missing), so they go where Linux keeps caches, not into the working directory, which
    for `ocr-daemon once` can be any folder of images: systemd's CacheDirectory= ($CACHE_DIRECTORY, the
    unit sets /var/cache/ocr-daemon), else $XDG_CACHE_HOME or ~/.cache, else engines.dir/cpu."""
    if environ.get("CACHE_DIRECTORY"):
        return Path(environ["CACHE_DIRECTORY"].split(":")[0]) / "cpu-models"
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"]) / "ocr-daemon" / "cpu-models"
    if environ.get("HOME"):
        return Path(environ["HOME"]) / ".cache" / "ocr-daemon" / "cpu-models"
    return Path(engines_dir) / "cpu"


def cache_key(source: Path) -> str:
    """16 hex digits: 8 for the source's path (so two models of one name keep their own copies), 8 for its
    size, mtime and the fold version."""
    st = source.stat()
    where = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]
    what = hashlib.sha256(f"{st.st_size}|{st.st_mtime_ns}|fold{FOLD_VERSION}".encode()).hexdigest()[:8]
    return where + what


def _names(source: Path, key: str, cache_dir: Path) -> tuple[Path, Path]:
    return cache_dir / f"{source.stem}.{key}.cpu.onnx", cache_dir / f"{source.stem}.{key}.unchanged"


def copy_state(source: Path, cache_dir: Path) -> str:
    """What the next load of ``source`` finds, without reading or writing a model (for `doctor`):
    "folded", "nothing to fold", "not written yet" or "missing model"."""
    try:
        target, marker = _names(source, cache_key(source), cache_dir)
    except OSError:
        return "missing model"
    return "folded" if target.exists() else "nothing to fold" if marker.exists() else "not written yet"


def folded_path(source: Path, cache_dir: Path) -> Path:
    """The file to load for ``source``: its folded copy, or ``source`` itself where nothing folds or the
    copy cannot be made (a warning, once per model and start)."""
    try:
        key = cache_key(source)
    except OSError:
        return source                      # a missing model: the backend's load names it
    target, marker = _names(source, key, cache_dir)
    if target.exists():
        return target
    if marker.exists():
        return source
    try:
        return _write(source, key, target, marker)
    except Exception as exc:   # onnx missing or unable to parse, a read-only or full disk: run unfolded
        log.warning("running %s unfolded on the CPU (%s), which is slower (docs/performance.md); set "
                    "ocr.cpu_fold_dir to a writable directory, or ocr.cpu_fold: false to silence this",
                    source.name, exc)
        return source


def _write(source: Path, key: str, target: Path, marker: Path) -> Path:
    import onnx

    from daemon.backends.onnxruntime.fold import fold

    model = onnx.load(str(source))
    counts = fold(model)
    if counts.total == 0:                  # nothing lost if the marker cannot be written: only a re-read
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            _remove_older(marker.parent, source.stem, key)
            marker.touch()
        except OSError:
            pass
        return source
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_older(target.parent, source.stem, key)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)               # mkstemp's 0600 would hide it from a service under another user
        os.replace(tmp, target)            # whole or absent, even under SIGKILL
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("folded %s for the CPU into %s: %d conv affines, %d pointwise affines, %d hard-swishes",
             source.name, target, counts.conv_affines, counts.pointwise_affines, counts.hard_swishes)
    return target


def _remove_older(cache_dir: Path, stem: str, key: str) -> None:
    """Before writing the copy or marker of ``stem`` and ``key``: those of earlier versions of the same
    model file (same stem and path, another size, mtime or fold version), and temporary files that a write
    killed half-way left behind (an hour old: a younger one may be another process's)."""
    where = re.escape(stem) + r"\." + key[:8] + r"[0-9a-f]{8}"
    ours = re.compile(where + r"\.(cpu\.onnx|unchanged)")
    partial = re.compile(r"\." + where + r"\.cpu\.onnx\..+")
    for old in cache_dir.iterdir():
        try:
            if ours.fullmatch(old.name) or (partial.fullmatch(old.name)
                                            and time.time() - old.stat().st_mtime > 3600):
                old.unlink(missing_ok=True)
        except FileNotFoundError:      # another process removed it first
            pass


def discard(path: Path) -> None:
    """A folded copy that ONNX Runtime could not load: removed, so the next start writes it again."""
    path.unlink(missing_ok=True)
