"""Credentials out of anything shown: logs, exception text, /healthz, stats. One pure function.

``rtsp://admin:s3cret@cam/stream`` is shown as ``rtsp://admin:***@cam/stream``, wherever it stands in a text
(a URI, a GStreamer pipeline with ``rtspsrc location=...``, an exception message). The user name stays (it
says which account is configured); the password goes, and so do ``user-pw=`` (rtspsrc), ``password=``,
``passwd=``, ``pwd=`` and ``token=`` values (cameras that take credentials in the query string).
"""
from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@ ; the password runs to the last '@' before the path (FFmpeg splits there too).
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*):(?P<pw>[^\s/]*)@")
_KEYED = re.compile(r"(?P<head>\b(?:user-pw|password|passwd|pwd|token)\s*=\s*)"
                    r"(?:(?P<q>[\"'])(?P<quoted>.*?)(?P=q)|(?P<pw>[^\s&;\"'!]+))", re.IGNORECASE)


def redact_uri(text: str) -> str:
    """text with every password in it replaced by ***; text without one comes back unchanged."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m.group('head')}:{MASK}@", str(text))
    return _KEYED.sub(lambda m: f"{m.group('head')}{m.group('q')}{MASK}{m.group('q')}" if m.group("q")
                      else f"{m.group('head')}{MASK}", text)
