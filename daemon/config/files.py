"""Files a config names, opened the one safe way: regular files only, read within a bound."""
from __future__ import annotations

import os
import stat
from typing import Optional

from daemon.config.errors import ConfigError, shown


def open_regular_file(key: str, path: str | os.PathLike, what: str) -> int:
    """A read-only descriptor of a regular file. Anything else is refused from its stat, never opened: opening a
    FIFO waits for a writer, and opening some devices acts (a watchdog starts counting). Opened non-blocking in
    case the path was swapped for a FIFO in between, and checked again."""
    fd = -1
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode):
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            mode = os.fstat(fd).st_mode
    except (OSError, ValueError) as exc:   # ValueError: a NUL in the path
        raise ConfigError(key, f"{what} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(mode):
        if fd >= 0:
            os.close(fd)
        raise ConfigError(key, f"{what} is not a regular file (it is {_file_kind(mode)})")
    return fd


def read_regular_file(key: str, path: str | os.PathLike, max_bytes: int, what: str) -> bytes:
    """The bytes of a regular file of at most max_bytes; `what` names it in the message."""
    fd = open_regular_file(key, path, what)
    try:
        st = os.fstat(fd)
        if st.st_size > max_bytes:
            raise ConfigError(key, f"{what} is {st.st_size} bytes, more than {max_bytes}")
        data = b""
        while len(data) <= max_bytes:   # it may grow while read
            chunk = os.read(fd, max_bytes + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise ConfigError(key, f"{what} cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ConfigError(key, f"{what} is more than {max_bytes} bytes")
    return data


def check_readable(key: str, path: Optional[str]) -> None:
    """A file read later (a model, a certificate) is a regular file (a FIFO would hang its reader) and opens now."""
    if path is not None:
        os.close(open_regular_file(key, path, shown(path)))


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"
