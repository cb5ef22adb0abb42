"""The cameras section: one CameraConfig per camera (its source, its results filter, how it publishes) with its
checks, and the rules that span the list (unique names, folders, the patterns' total size)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

from daemon.codes import CODE_FORMATS
from daemon.config.checks import NAME_RULE, valid_name
from daemon.config.errors import ConfigError, require, shown
from daemon.formats import FORMATS
from daemon.patterns import PatternError, compile_pattern

# v4l2 cameras by number: Linux has /dev/video0 to /dev/video255 (VIDEO_NUM_DEVICES).
V4L2_DEVICES = 256
# accept_patterns: OCR lines are short, so a longer pattern or a larger repeat count is a mistake, and the regex
# compiler fails on counts from 2**32 - 1 up (OverflowError) and on deep nesting (RecursionError). The total keeps
# compiling them all (a few microseconds a character, more when nested) well inside the second a check may take.
MAX_PATTERN_CHARS = 1000
MAX_PATTERN_REPEAT = 1000
MAX_PATTERNS_TOTAL_CHARS = 65536
_REPEAT_COUNT = re.compile(r"(?<!\\)\{(\d+)(?:,(\d*))?\}")
LIVE_KINDS = ("v4l2", "rtsp", "gstreamer")   # cameras watching moving labels: consensus by default


@dataclass(frozen=True)
class CameraConfig:
    name: str = ""
    # v4l2: /dev/video0 or 0; gstreamer: a pipeline ending in appsink; rtsp: rtsp://...;
    # file: a video file; folder: a directory that a scanner drops images into.
    kind: Literal["v4l2", "gstreamer", "rtsp", "file", "folder", "sample"] = "sample"
    uri: str = ""
    # Region of interest [x, y, width, height] in frame pixels; empty = whole frame.
    roi: tuple[int, ...] = ()
    # A dot-matrix print (continuous inkjet): blur of this sigma in pixels, about half the dot pitch in the image,
    # joins its dots into strokes before the frame is read; 0 = off (bench/RESULTS.md, "Verification quality").
    join_dots_px: float = 0.0
    # The detector looks for lines in a contrast-equalized copy of the frame (CLAHE): a print whose ink is close
    # to its pack's colour is found; the recognizer and the print grade still read the frame itself (an equalized
    # faded character would grade as well printed). false = the detector sees the frame as read.
    equalize_detection: bool = False
    # Frame-rate cap; 0 = as fast as the source and the pipeline go.
    max_fps: float = 0.0
    # Video file: start again at the end.
    loop: bool = False
    # Folder: what happens to an image once its result is in the outbox.
    done_action: Literal["move", "delete", "mark"] = "move"
    # Folder + move: another directory (another file system is fine: copied, fsynced, then unlinked).
    done_dir: str = ""
    # Folder: an image that fails to decode is retried (with backoff) while it changes; only once it has
    # been unreadable and unchanged (size, mtime) this long is it set aside as <name>.bad.
    unreadable_after_s: float = 30.0
    # Folder: decode limits, checked before decoding (file size by fstat, pixels from the image header);
    # an image over either is set aside as <name>.bad at once. 0 = no limit. 40 MP fits an A4 page at
    # 600 dpi (35 MP) and decodes in about 120 MiB of RGB.
    max_frame_pixels: int = 40_000_000
    max_file_bytes: int = 64 * 1024 * 1024
    # Reconnect backoff: initial and maximum delay; jitter is +-20 %.
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    # Restart the source when no frame arrived for this long; 0 = never (folders idle legitimately).
    watchdog_s: float = 20.0
    # Results: lines below this confidence are rejected (counted).
    min_confidence: float = 0.5
    # Results: when non-empty, a line must fully match one of these regexes (rejects counted).
    accept_patterns: tuple[str, ...] = ()
    # Results: named formats whose check digit a line must pass (s10, sscc, gtin, iso6346), beside the patterns.
    accept_formats: tuple[str, ...] = ()
    # Codes read in each frame (zxing-cpp names: Code128, QRCode, DataMatrix, EAN13, ...); [] = off. The default
    # is every format the daemon reads; a camera that lists only its own formats spends less CPU per frame
    # (docs/performance.md#codes, bench/RESULTS.md section 33).
    codes: tuple[str, ...] = CODE_FORMATS
    # Consensus: a frame whose labels are all followed ones that have their codes (read in two searched frames)
    # is searched for codes only every third frame; false: every frame (docs/performance.md#codes).
    codes_settle: bool = True
    # Consensus: a frame whose labels are all followed ones whose text settled (each line read alike twice and in
    # most of its readings) is left unread (no post-processing, crops or recognizer, nor detector where it does not
    # overlap frames; its label outlines keep them in view) but for every fourth frame; false: every frame is read
    # (docs/cameras.md#settled-labels).
    text_settle: bool = True
    # Results: the same set of texts from this camera is published once per window.
    dedup_window_s: float = 10.0
    # Publish a message even when a frame yields no accepted text.
    publish_empty: bool = False
    # consensus: a label is followed across frames, its readings voted, published once (with "frames");
    # first: the first reading, repeats dropped by dedup_window_s. null = consensus for v4l2, rtsp and
    # gstreamer (moving labels), first for file, folder and sample; a folder is always first (one reading a file).
    publish_mode: Optional[Literal["consensus", "first"]] = None
    # Consensus: a label is finished (published) when not seen for this many frames of its camera ...
    leave_after_frames: int = 5
    # ... or this long, or once it has waited this long since its first frame (the latency consensus adds).
    leave_after_s: float = 1.0
    max_wait_s: float = 3.0
    # Consensus: every label seen is one message with a status (ocr-result/5): good_read, or no_read when it was
    # seen and nothing of it was accepted (no texts; its frame in the evidence store), so a tunnel's no-reads are an
    # output (docs/read-cycles.md). false: no status, and a label not read leaves no message.
    label_status: bool = True
    # continuous: reads every frame (above); triggered: reads only when asked (MQTT .../<camera>/trigger, the page's
    # POST /api/cameras/<camera>/trigger, the Modbus trigger coil) and answers each trigger with exactly one result
    # (ocr-result/5: good_read, no_read, no_label, mismatch, multiple): docs/read-cycles.md.
    mode: Literal["continuous", "triggered"] = "continuous"
    # Triggered: a cycle votes the frames captured after the trigger until this many ...
    cycle_frames: int = 5
    # ... or this long after the trigger, whichever comes first.
    cycle_window_ms: float = 1000.0
    # Triggered: what is expected, at most one of text, template (fields from the trigger: "LOT {lot}"), regex or
    # format (an accept_formats name), plus optionally a code value; none: a read is a good_read.
    expect_text: Optional[str] = None
    expect_template: Optional[str] = None
    expect_regex: Optional[str] = None
    expect_format: Optional[str] = None
    expect_code: Optional[str] = None
    # Triggered: values of expect_template's fields a trigger need not send ({date: today+30}); the trigger's win.
    expect_fields: Optional[dict[str, str]] = None
    # Triggered: more than one label read in one cycle is the status multiple.
    one_label: bool = True
    # Triggered: a character read right whose runner-up is this close is "confused" and fails the part
    # (bench/RESULTS.md, "Verification quality").
    confused_margin: float = 0.3
    # Triggered: a character read right but printed with under this share of its line's typical ink contrast is
    # "faint" and fails the part (a dry nozzle, a worn ribbon); 0 = print quality not judged.
    faint_below: float = 0.5
    # Triggered: a character read right whose ink goes this far beyond its shape (a blot thicker than the line's
    # strokes, ink another copy of it in the line lacks; 1.0 = the bench's bound) is "smudged" and fails the part;
    # 0 = not judged. Solid print only: a camera with join_dots_px does not judge it (daemon/ocr/print_quality.py).
    smudged_over: float = 1.0
    # Triggered: the recipe (recipes[].name) a trigger naming none is judged by; null: the expect_ keys above.
    recipe: Optional[str] = None

    def check(self, key: str) -> None:
        require(valid_name(self.name), f"{key}.name", self.name, NAME_RULE)
        require(bool(self.uri) or self.kind == "sample", f"{key}.uri", self.uri, f"must be set for kind {self.kind}")
        require(not (self.kind == "v4l2" and self.uri.isdigit())
                or (len(self.uri) <= 3 and self.uri.isascii() and int(self.uri) < V4L2_DEVICES), f"{key}.uri",
                self.uri, f"is neither a /dev/video index (0-{V4L2_DEVICES - 1}) nor a device path")
        require(len(self.roi) in (0, 4), f"{key}.roi", list(self.roi), "must be [x, y, width, height] or empty")
        if self.roi:
            require(self.roi[0] >= 0 and self.roi[1] >= 0 and self.roi[2] > 0 and self.roi[3] > 0,
                    f"{key}.roi", list(self.roi), "needs x, y >= 0 and width, height > 0")
        require(self.max_fps >= 0, f"{key}.max_fps", self.max_fps, "must not be negative")
        require(0.0 <= self.join_dots_px <= 10.0, f"{key}.join_dots_px", self.join_dots_px,
                "must be 0 (off) to 10 pixels")
        require(0 < self.reconnect_initial_s <= self.reconnect_max_s, f"{key}.reconnect_initial_s",
                self.reconnect_initial_s, "must be positive and not above reconnect_max_s")
        require(self.watchdog_s >= 0, f"{key}.watchdog_s", self.watchdog_s, "must not be negative")
        require(0.0 <= self.min_confidence <= 1.0, f"{key}.min_confidence", self.min_confidence,
                "must be between 0 and 1")
        require(self.dedup_window_s >= 0, f"{key}.dedup_window_s", self.dedup_window_s, "must not be negative")
        require(not (self.kind == "folder" and self.publish_mode == "consensus"), f"{key}.publish_mode",
                self.publish_mode, "is not available for kind folder (one reading per file, acknowledged at once)")
        require(self.leave_after_frames >= 1, f"{key}.leave_after_frames", self.leave_after_frames,
                "must be at least 1")
        require(self.leave_after_s > 0, f"{key}.leave_after_s", self.leave_after_s, "must be positive")
        require(self.max_wait_s > 0, f"{key}.max_wait_s", self.max_wait_s, "must be positive")
        for j, name in enumerate(self.accept_formats):
            require(name in FORMATS, f"{key}.accept_formats[{j}]", name, f"is not one of {', '.join(FORMATS)}")
        for j, name in enumerate(self.codes):
            require(name in CODE_FORMATS, f"{key}.codes[{j}]", name, f"is not one of {', '.join(CODE_FORMATS)}")
        require(self.unreadable_after_s >= 0, f"{key}.unreadable_after_s", self.unreadable_after_s,
                "must not be negative")
        require(self.max_frame_pixels >= 0, f"{key}.max_frame_pixels", self.max_frame_pixels,
                "must be 0 (no limit) or a pixel count")
        require(self.max_file_bytes >= 0, f"{key}.max_file_bytes", self.max_file_bytes,
                "must be 0 (no limit) or a size in bytes")
        for j, pattern in enumerate(self.accept_patterns):
            check_pattern(f"{key}.accept_patterns[{j}]", pattern)
        if self.mode == "triggered":
            self._check_cycle(key)

    def _check_cycle(self, key: str) -> None:
        from daemon.config.recipes import check_expectation, check_fields

        require(self.kind not in ("folder", "file"), f"{key}.mode", self.mode,
                f"is for live cameras, not kind {self.kind} (a trigger reads the frames captured after it)")
        require(1 <= self.cycle_frames <= 1000, f"{key}.cycle_frames", self.cycle_frames, "must be 1 to 1000")
        require(0 < self.cycle_window_ms <= 600_000, f"{key}.cycle_window_ms", self.cycle_window_ms,
                "must be above 0 and at most 600000 (10 minutes)")
        require(0.0 <= self.confused_margin <= 1.0, f"{key}.confused_margin", self.confused_margin,
                "must be between 0 and 1")
        require(0.0 <= self.faint_below <= 1.0, f"{key}.faint_below", self.faint_below, "must be between 0 and 1")
        require(0.0 <= self.smudged_over <= 100.0, f"{key}.smudged_over", self.smudged_over,
                "must be between 0 (not judged) and 100")
        check_expectation(key, self)
        check_fields(key, self)


def publish_mode(cam: CameraConfig) -> str:
    """The camera's publish mode with the default by kind applied."""
    if cam.publish_mode is not None:
        return cam.publish_mode
    return "consensus" if cam.kind in LIVE_KINDS else "first"


def check_cameras(cameras: tuple[CameraConfig, ...]) -> None:
    """The rules of the list (each camera checked itself when built): at least one, names unique, folders apart,
    the accept patterns of all cameras within MAX_PATTERNS_TOTAL_CHARS."""
    require(len(cameras) >= 1, "cameras", list(cameras), "must list at least one camera")
    seen: set[str] = set()
    for i, cam in enumerate(cameras):
        require(cam.name not in seen, f"cameras[{i}].name", cam.name, "is used by another camera")
        seen.add(cam.name)
    _check_folders(cameras)
    total = 0
    for i, cam in enumerate(cameras):
        for j, pattern in enumerate(cam.accept_patterns):
            total += len(pattern)
            require(total <= MAX_PATTERNS_TOTAL_CHARS, f"cameras[{i}].accept_patterns[{j}]", pattern,
                    f"brings the accept patterns of all cameras over {MAX_PATTERNS_TOTAL_CHARS} characters")


def check_pattern(key: str, pattern: str) -> None:
    """An accept pattern that compiles, with bounds the compiler itself lacks."""
    require(len(pattern) <= MAX_PATTERN_CHARS, key, pattern, f"is longer than {MAX_PATTERN_CHARS} characters")
    for match in _REPEAT_COUNT.finditer(pattern):
        count = max(int(n) for n in match.groups() if n)
        require(count <= MAX_PATTERN_REPEAT, key, pattern,
                f"repeats {count} times ({match.group()}); at most {MAX_PATTERN_REPEAT} (OCR lines are short)")
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        raise ConfigError(key, f"{shown(pattern)} is not a valid regex ({exc})") from None


def _check_folders(cameras: tuple[CameraConfig, ...]) -> None:
    """Folder cameras: done_dir is not the watched folder (every file would be handed out again on every
    pass), and no two folder cameras watch one folder, or one's done_dir is another's folder. Each path is
    resolved once (symlinks and '..'; they need not exist yet): a thousand folder cameras check in milliseconds."""
    folders = [(i, cam, os.path.realpath(cam.uri)) for i, cam in enumerate(cameras)
               if cam.kind == "folder" and cam.uri]
    watched_by: dict[str, int] = {}
    for i, cam, real in folders:
        first = watched_by.setdefault(real, i)
        require(first == i, f"cameras[{i}].uri", cam.uri, f"is already watched by cameras[{first}] "
                f"({cameras[first].name}); two folder cameras would read the same files")
    for i, cam, real in folders:
        if cam.done_action != "move":
            continue
        done_dir = cam.done_dir or os.path.join(cam.uri, "done")
        other = watched_by.get(os.path.realpath(done_dir))
        if other == i:
            raise ConfigError(f"cameras[{i}].done_dir", f"{shown(cam.done_dir)} is the watched folder itself "
                              f"(cameras[{i}].uri); use another directory, or done_action: delete or mark")
        if other is not None:
            raise ConfigError(f"cameras[{i}].done_dir", f"{shown(done_dir)} is the folder watched by "
                              f"cameras[{other}] ({cameras[other].name}); its files would be read again")


def grades_print(cameras: Sequence[CameraConfig]) -> bool:
    """Whether any camera judges print quality (triggered, faint_below or smudged_over above 0): only then does the
    pipeline grade each character's ink (daemon/ocr/print_quality.py), which costs a little per line."""
    return any(c.mode == "triggered" and (c.faint_below > 0 or c.smudged_over > 0) for c in cameras)
