"""Writing a file so that readers see the old one or the new one, never a part of it (engines, sidecars,
compiled kernels, FP16 models: a crash or a full disk mid-build must not leave a truncated file that
looks usable)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: str | Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a part: a temporary file in the same directory,
    flushed to disk, then os.replace. The mode is a plain open's (0666 less the umask), not mkstemp's
    0600: the daemon's user must be able to read what root built."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
