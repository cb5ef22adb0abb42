"""Typed configuration: every tunable of config.yaml, its default and its check, in one place.

Loading reads the file within bounds (size, encoding, nesting, aliases, number length) and walks the
dataclasses below: an unknown key, a wrong type, a value out of range or one that MQTT, OPC UA or the OS
cannot carry is a ConfigError of one line that names the key path (``cameras[1].roi``) and shows the value,
cut to SHOWN_VALUE_CHARS. Nothing else in the package reads environment variables for settings; the secrets
(the MQTT and OPC UA passwords, the page's token) are read from the environment or a file, only by name and
only from here.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import re
import reprlib
import socket
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from daemon.codes import CODE_FORMATS
from daemon.formats import FORMATS

log = logging.getLogger(__name__)


# An error is one line of the journal: values are shown cut to this many characters, the whole message to the other.
SHOWN_VALUE_CHARS = 80
MAX_MESSAGE_CHARS = 1000


class ConfigError(ValueError):
    """A config value that cannot be used; ``key`` is the dotted path to it. The message is one line of at most
    MAX_MESSAGE_CHARS characters, whatever the value was."""

    def __init__(self, key: str, message: str):
        self.key = key
        text = " ".join((f"{key}: {message}" if key else message).splitlines())
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[:MAX_MESSAGE_CHARS] + f"… ({len(text)} characters)"
        super().__init__(text)


class _ShortRepr(reprlib.Repr):
    """repr() with every part bounded: a huge list, a deep one or a long integer is shown by its start."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxtuple, self.maxset = 3, 4, 6, 6, 6
        self.maxstring = self.maxother = self.maxlong = SHOWN_VALUE_CHARS

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 200:   # repr() of a number over 4300 digits raises; its size is what matters
            return f"<an integer of {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


_short_repr = _ShortRepr()


def _shown(value: Any) -> str:
    """The value as an error message shows it: its repr, cut to SHOWN_VALUE_CHARS with its full length added."""
    if isinstance(value, str) and len(value) > SHOWN_VALUE_CHARS:
        return f"{value[:SHOWN_VALUE_CHARS]!r}… ({len(value)} characters)"
    if isinstance(value, (list, tuple, dict)) and len(value) > 6:
        return f"{_short_repr.repr(value)} ({len(value)} items)"
    return _short_repr.repr(value)


@dataclass(frozen=True)
class OcrConfig:
    # Which bundled models the null paths below mean; same pre- and post-processing for all three.
    # pp-ocrv6-small (default): PP-OCRv6 small's detector and recognizer with the v2.0 0/180 classifier, all
    # from the rapidocr==3.10.0 wheel (installed with --no-deps: its declared opencv-python-headless would
    # replace opencv-python's cv2). Its detector reads hard labels best (CER 3.78 % on 120 hard labels against
    # 5.57 % for v4's detector and 4.53 % for RapidOCR 3.10) and, on the CPU, runs from its shipped INT8 copy
    # (cpu_int8_det) at about v4's folded FP32 speed: 2.46x RapidOCR 1.4.4 as processes on 2 vCPUs, 3.02x
    # on 16 (bench/RESULTS.md section 25). pp-ocrv4-det-v6-rec: v4 mobile's detector with v6 small's recognizer,
    # the default before (4-15 % faster on 2 vCPUs, worse on hard labels). pp-ocrv4: all three from the
    # rapidocr-onnxruntime==1.4.4 wheel, RapidOCR 1.4.4's own models.
    model_set: Literal["pp-ocrv4", "pp-ocrv6-small", "pp-ocrv4-det-v6-rec"] = "pp-ocrv6-small"
    # Model files; null = the model_set's file. A path given here wins over the set.
    det_model: Optional[str] = None
    rec_model: Optional[str] = None
    cls_model: Optional[str] = None
    # Character dictionary, one per line; null = read from the recognizer's ONNX metadata.
    dictionary: Optional[str] = None
    # fp32 runs the ONNX above; int8 runs the Q/DQ models written by `ocr-daemon calibrate` into engines/.
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    # Fixed detector input [height, width]; frames are letterboxed into it (aspect kept, padded).
    # 960 wide keeps 1280x960 label text at 3/4 size (640 and 736 lose small text, see bench/RESULTS.md);
    # 736 high fits a 4:3 or 16:9 frame at that scale with no padded rows. Portrait cameras: swap them.
    det_input_size: tuple[int, int] = (736, 960)
    # Frames per detector call (engine batch); frames of several cameras share one call.
    det_batch: int = 1
    # DB post-processing, PaddleOCR defaults: probability threshold, box score, unclip ratio.
    det_threshold: float = 0.3
    det_box_threshold: float = 0.5
    det_unclip_ratio: float = 1.6
    det_min_size: int = 3
    det_max_candidates: int = 1000
    # Fixed recognizer input: 3 x rec_height x rec_width, in batches of rec_batch (last one padded).
    rec_height: int = 48
    rec_width: int = 320
    rec_batch: int = 8
    # The CPU's recognizer and classifier batch (ONNX Runtime takes any batch; rec_batch is the TensorRT
    # engines' shape). 0 = automatic: 4 on 1 or 2 threads, where 8 lines per call fall out of a core's
    # cache (per line 17.5 vs 22.5 ms on 2 vCPUs), rec_batch from 3 threads up (bench/RESULTS.md section 19).
    cpu_rec_batch: int = 0
    # A second fixed recognizer batch for an image's last few lines, so they do not pay for a whole
    # padded rec_batch call (a second engine on TensorRT); 0 = off. Must be smaller than rec_batch.
    rec_tail_batch: int = 2
    # Short line pieces share one 3 x 48 x 320 slot, side by side with half a line height of padding
    # between them, each decoded from its own output columns (same readings; with the tail batch 22 %
    # fewer recognizer slots on the benchmark labels, bench/RESULTS.md).
    rec_packing: bool = True
    # 0/180 degree line classifier for labels that arrive upside down.
    use_angle_classifier: bool = True
    cls_threshold: float = 0.9
    # Lines below this recognition confidence are dropped by the pipeline itself.
    drop_score: float = 0.5
    # ONNX Runtime intra-op threads per model; 0 = one per physical core (SMT siblings counted once).
    threads: int = 0
    # CPU backend: frames in the pipeline at once. 2 = the detector of frame N+1 runs on its own thread
    # while frame N is recognized; 0 = automatic (2 from 4 physical cores up, bench/RESULTS.md section 17).
    frames_in_flight: int = 0
    # CPU backend, FP32: run each model from a copy with its scalar affines folded into the convolutions
    # and its hard-swishes in one piece (exact up to float rounding; the v4 detector 1.37x faster, see
    # daemon/backends/onnxruntime/fold.py), written once. false = the files as shipped.
    cpu_fold: bool = True
    # Where those copies go; null = the system's cache: $CACHE_DIRECTORY under systemd (the unit's
    # /var/cache/ocr-daemon), else $XDG_CACHE_HOME or ~/.cache/ocr-daemon, else engines.dir/cpu.
    cpu_fold_dir: Optional[str] = None
    # CPU, FP32: run the detector from its shipped INT8 copy where daemon/models/ has one for that exact file
    # (PP-OCRv6 small's: u8 x s8 integer kernels, 3.2-3.4x its FP32 speed on 2 vCPUs, CER lower on hard labels;
    # daemon/quantize/cpu_int8.py, bench/RESULTS.md section 25). false = the detector in FP32.
    cpu_int8_det: bool = True


@dataclass(frozen=True)
class EnginesConfig:
    # Where calibrated Q/DQ models, TensorRT engines and their JSON sidecars live.
    dir: str = "engines"
    # TensorRT builder memory pool (workspace) limit.
    workspace_mib: int = 1024
    # Per-GPU timing cache, reused between builds to cut build time on a Jetson.
    timing_cache: Optional[str] = "engines/timing.cache"
    # Keep these ONNX node names in float when quantizing (layers that lose accuracy in INT8).
    int8_exclude_nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class GpuConfig:
    # Buffer sets and CUDA streams: 2 lets frame N+1's upload and preprocess overlap frame N's inference.
    streams: int = 2
    # Frames via mapped pinned memory instead of an upload; auto = only on integrated GPUs (Jetson).
    zero_copy: Literal["auto", "on", "off"] = "auto"
    # Longest wait for frames of other cameras to fill a detector batch.
    batch_wait_ms: float = 5.0


@dataclass(frozen=True)
class CameraConfig:
    name: str = ""
    # v4l2: /dev/video0 or 0; gstreamer: a pipeline ending in appsink; rtsp: rtsp://...;
    # file: a video file; folder: a directory that a scanner drops images into.
    kind: Literal["v4l2", "gstreamer", "rtsp", "file", "folder", "sample"] = "sample"
    uri: str = ""
    # Region of interest [x, y, width, height] in frame pixels; empty = whole frame.
    roi: tuple[int, ...] = ()
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
    # Codes read in each frame (zxing-cpp names: Code128, QRCode, DataMatrix, EAN13, ...); [] = off.
    # Code128 + QRCode cost ~13 ms per 1280x960 frame on a 2-core x86, DataMatrix ~15 ms more (bench/RESULTS.md 12).
    codes: tuple[str, ...] = ("Code128", "QRCode")
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


LIVE_KINDS = ("v4l2", "rtsp", "gstreamer")   # cameras watching moving labels: consensus by default


def publish_mode(cam: CameraConfig) -> str:
    """The camera's publish mode with the default by kind applied."""
    if cam.publish_mode is not None:
        return cam.publish_mode
    return "consensus" if cam.kind in LIVE_KINDS else "first"


@dataclass(frozen=True)
class TlsConfig:
    enabled: bool = False
    ca_file: Optional[str] = None
    # Client certificate and key: mutual TLS.
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    # Skip hostname verification (a lab broker with a self-signed certificate); never in production.
    insecure: bool = False


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = True
    host: str = "localhost"
    port: int = 1883
    protocol: Literal["3.1.1", "5"] = "5"
    # null = "ocr-daemon-<device_id>"; a stable id keeps the broker's session across reconnects.
    client_id: Optional[str] = None
    topic_prefix: str = "ocr"
    keepalive_s: int = 30
    username: Optional[str] = None
    # The password is never written in this file: name an environment variable or a file holding it.
    password_env: Optional[str] = None
    password_file: Optional[str] = None
    tls: TlsConfig = field(default_factory=TlsConfig)
    # Unacknowledged QoS 1 messages in flight at once (bounded by max_inflight_limit(): packet ids, SQLite).
    max_inflight: int = 20
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    # A reading above this many payload bytes goes to the dead letters at put() (readings are a few KB).
    max_payload_bytes: int = 256 * 1024
    # Period of the {prefix}/{device}/stats message; 0 = off.
    stats_interval_s: float = 30.0


@dataclass(frozen=True)
class OpcUaConfig:
    # An OPC UA server (daemon/publish/sinks/opcua.py): per camera a folder with the last reading, an event each.
    enabled: bool = False
    # Address the server listens on; PLCs and SCADA reach it over the plant network.
    host: str = "0.0.0.0"
    port: int = 4840
    # The namespace of the daemon's nodes (ns=2 on a fresh server).
    namespace_uri: str = "urn:ocr-daemon"
    # Basic256Sha256 is the only policy offered; Sign alone leaves the readings readable on the wire.
    security_mode: Literal["SignAndEncrypt", "Sign"] = "SignAndEncrypt"
    # Server certificate (DER) and key (PEM): generated on first start when both are absent (under state_dir).
    cert_file: str = "var/opcua/server-cert.der"
    key_file: str = "var/opcua/server-key.pem"
    # The one user; its password, like the MQTT one, only by the name of an environment variable or a file.
    username: str = "ocr"
    password_env: Optional[str] = None
    password_file: Optional[str] = None
    # Anonymous sessions (no user) are refused unless this is true.
    allow_anonymous: bool = False
    # null: any client certificate valid now and for its application URI; a folder: only the certificates in it
    # (DER or PEM) or those signed by a CA certificate in it.
    trusted_clients_dir: Optional[str] = None


@dataclass(frozen=True)
class SparkplugConfig:
    # Sparkplug B on the mqtt broker (host, port, user, TLS of the mqtt section), one device per camera.
    enabled: bool = False
    # spBv1.0/{group_id}/...: the group the edge node belongs to.
    group_id: str = "ocr"
    # null = device_id.
    edge_node_id: Optional[str] = None
    # Sparkplug 3.0 asks for QoS 0 on DDATA; 1 (default) lets the outbox keep a reading until the broker has it.
    qos: Literal[0, 1] = 1
    # null = "ocr-daemon-<device_id>-spb" (a client id of its own: NDEATH is this connection's will).
    client_id: Optional[str] = None


@dataclass(frozen=True)
class HomeAssistantConfig:
    # Home Assistant MQTT discovery on the mqtt broker: a sensor per camera with its last text (needs mqtt.enabled).
    enabled: bool = False
    # Home Assistant's discovery prefix (its MQTT integration's setting).
    discovery_prefix: str = "homeassistant"
    # null = "ocr-daemon-<device_id>-ha".
    client_id: Optional[str] = None


@dataclass(frozen=True)
class OutboxConfig:
    # SQLite file holding every result until the broker acknowledged it.
    path: str = "var/outbox.sqlite3"
    max_rows: int = 100_000
    max_bytes: int = 256 * 1024 * 1024
    # When a cap is reached: drop_oldest deletes the oldest rows, refuse_new drops the new result.
    full_policy: Literal["drop_oldest", "refuse_new"] = "drop_oldest"
    # Rows older than this are dropped (counted); 0 = keep until published.
    ttl_s: float = 7 * 24 * 3600.0
    # A row whose delivery failed this many times (refusing PUBACK, or the broker cutting us off) is dead-lettered.
    dead_letter_after_failures: int = 5


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    # Prometheus /metrics and /healthz; loopback by default.
    host: str = "127.0.0.1"
    port: int = 9108


@dataclass(frozen=True)
class WebConfig:
    # The local page (daemon/web): each camera's latest frame with its readings drawn, recent readings, rejects.
    enabled: bool = True
    # Loopback by default (reach it over an SSH tunnel); any other address needs an access token below.
    host: str = "127.0.0.1"
    # TCP port of the page; 0 = any free port (logged at start).
    port: int = 8088
    # The access token, like the MQTT password never in this file: the name of an environment variable ...
    token_env: Optional[str] = None
    # ... or a file holding it (a systemd credential); at least MIN_TOKEN_CHARS characters.
    token_file: Optional[str] = None
    # Readings listed per camera on the page, newest first.
    recent_readings: int = 20
    # Rejects (reasons and the lines not kept) listed per camera; a repeated reject is one entry with a count.
    recent_rejects: int = 20
    # How often the page asks for new state and, when it changed, the camera's frame.
    refresh_ms: int = 1000
    # Requests served at once (waitress worker threads); the page costs one request per camera per refresh.
    threads: int = 4
    # The longest side of the drawn frame the page shows, in pixels (drawn and encoded only when asked for).
    frame_max_side_px: int = 1280
    # Where the page's "save frame" button writes PNGs; at most max_saved_frames, the oldest deleted first.
    saved_frames_dir: str = "var/saved-frames"
    # Saved PNGs kept in saved_frames_dir.
    max_saved_frames: int = 200


@dataclass(frozen=True)
class EvidenceConfig:
    # Per stored reading, its frame and line crops as JPEGs (daemon/evidence.py), fetched as /evidence/<id>.jpg.
    enabled: bool = True
    # The evidence folder (relative paths resolve against state_dir); nothing else should live there.
    dir: str = "var/evidence"
    # Size cap of the folder; the oldest readings' files go first. 512 MiB = ~5500 sample readings (97 KB each).
    max_bytes: int = 512 * 1024 * 1024
    # Files older than this are deleted; 0 = kept until the size cap needs the room.
    ttl_s: float = 7 * 24 * 3600.0
    # Nothing is written while the file system has less free than this: evidence never fills the outbox's disk.
    min_free_bytes: int = 1024 * 1024 * 1024
    # The frame is scaled down to this longest side before encoding; 0 = as captured. Crops are kept at full size.
    frame_max_side_px: int = 1280
    # JPEG quality of the frame and the crops, 1..100.
    jpeg_quality: int = 80
    # Line crops beside the frame (one small JPEG per line).
    crops: bool = True
    # Readings waiting for the writer thread; when full, a reading's evidence is dropped (counted), never waited for.
    # Each holds its frame in memory until written (a 1280x960 frame is 3.7 MB: 16 = 59 MB at most).
    queue_size: int = 16
    # A stored reading with a line below this confidence also sends its id to {prefix}/{device}/{camera}/review
    # (through the outbox, after the reading); 0 = off.
    review_below_confidence: float = 0.0


@dataclass(frozen=True)
class ServiceConfig:
    # SIGTERM: how long to drain the pipeline and the outbox before exiting with the rest on disk.
    drain_timeout_s: float = 10.0
    # /healthz turns unhealthy and the systemd watchdog stops being fed when no frame made progress this long.
    stall_timeout_s: float = 60.0
    # /healthz turns unhealthy (503) when the oldest undelivered outbox row is older than this while the broker
    # is connected: delivery is wedged, not merely offline (an unreachable broker never fails health).
    max_undelivered_age_s: float = 300.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@dataclass(frozen=True)
class Config:
    # Appears in topics, payloads and the MQTT client id: {prefix}/{device_id}/...; must be unique per box.
    # null = derived from /etc/machine-id (ocr-<8 hex>, stable across restarts), else the hostname.
    device_id: Optional[str] = None
    # auto = TensorRT where it loads and the engines match, else ONNX Runtime on the CPU.
    backend: Literal["auto", "tensorrt", "onnxruntime"] = "auto"
    # Absolute directory that relative outbox.path, engines.dir, engines.timing_cache, evidence.dir and
    # web.saved_frames_dir resolve against,
    # so `calibrate`/`build-engine` write where the service reads; null = the working directory.
    state_dir: Optional[str] = None
    ocr: OcrConfig = field(default_factory=OcrConfig)
    engines: EnginesConfig = field(default_factory=EnginesConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    cameras: tuple[CameraConfig, ...] = (CameraConfig(name="sample", kind="sample"),)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    opcua: OpcUaConfig = field(default_factory=OpcUaConfig)
    sparkplug: SparkplugConfig = field(default_factory=SparkplugConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)


# ---------------------------------------------------------------- generic walk over the dataclasses

def _convert(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if origin is Literal:
        # by type too: true is not 1 (sparkplug.qos), 1.0 is not 1
        if not any(type(value) is type(a) and value == a for a in args):
            raise ConfigError(key, f"{_shown(value)} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {_shown(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(key, f"expected a list of {len(args)} items, got {_shown(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {_shown(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {_shown(value)}")
        return _in_int64(value, key)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = (" (YAML 1.1 reads 1e3 as text: write 1.0e+3)"
                    if isinstance(value, str) and _EXPONENT_ONLY.fullmatch(value) else "")
            raise ConfigError(key, f"expected a number, got {_shown(value)}{hint}")
        if not math.isfinite(_in_int64(value, key) if isinstance(value, int) else value):
            raise ConfigError(key, f"expected a finite number, got {_shown(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ConfigError(key, f"expected a string, got {_shown(value)}")
        return value if isinstance(value, str) else str(_in_int64(value, key))
    raise ConfigError(key, f"unsupported type {hint!r}")  # a programming error, caught by the tests


_EXPONENT_ONLY = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")
# Integers go to SQLite, C libraries and the protocols as at most 64 bits.
INT64_MAX = 2 ** 63 - 1


def _in_int64(value: int, key: str) -> int:
    if not -INT64_MAX <= value <= INT64_MAX:
        raise ConfigError(key, f"{_shown(value)} is out of range (at most {INT64_MAX} either way)")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix, f"expected a mapping, got {_shown(data)}")
    hints = _type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            raise ConfigError(_join(prefix, _key_text(k)), f"unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], _join(prefix, k)) for k, v in data.items()}
    return cls(**kwargs)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The fields' types, evaluated once per class (each evaluation compiles every annotation: a config with a
    thousand cameras spent most of its load here)."""
    return typing.get_type_hints(cls)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _key_text(key: Any) -> str:
    """A mapping key as a key path shows it: as written when it looks like a key, else its short repr."""
    return key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else _shown(key)


# ---------------------------------------------------------------- checks a type cannot express

# fullmatch, not "$": "$" also matches before a final newline ("dock\n" would pass and break the topic).
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NAME_RULE = "must be 1-64 letters, digits, '_', '-' or '.', and not '.' or '..' (it is an MQTT topic level)"
# MQTT's Keep Alive is a 16-bit field; paho's thread dies on a larger one and never connects.
MAX_KEEPALIVE_S = 65535
# SQLite >= 3.32 allows 32766 bound parameters per statement by default (older builds: 999). The outbox's
# pending() binds every id in flight or acknowledged-but-not-yet-deleted (up to 2 x max_inflight), one per
# camera backing off, and the LIMIT. MQTT's 16-bit packet ids (65535) are the other, looser bound.
SQLITE_MAX_VARIABLES = 32766
MQTT_MAX_PACKET_IDS = 65535
# An access token for the page shorter than this is refused: guessable over a plant network.
MIN_TOKEN_CHARS = 16


def max_inflight_limit(cameras: int) -> int:
    """The largest usable mqtt.max_inflight with this many cameras (16382 for one)."""
    return min(MQTT_MAX_PACKET_IDS, (SQLITE_MAX_VARIABLES - 1 - cameras) // 2)


def _valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and name not in (".", "..")


def _require(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(key, f"{_shown(value)} {why}")


def _check_readable(key: str, path: Optional[str]) -> None:
    """A file read later (a model, a certificate) is a regular file (a FIFO would hang its reader) and opens now."""
    if path is not None:
        os.close(_open_regular_file(key, path, _shown(path)))


# ---------------------------------------------------------------- what the OS, MQTT and OPC UA can carry

# Every wait goes through Python's timers, which refuse more than threading.TIMEOUT_MAX (about 292 years);
# a *_s or *_ms setting above this bound (about 31 years) is a typo, not a wish.
MAX_DURATION_S = 1e9
# Linux's PATH_MAX (with its NUL) and NAME_MAX, in bytes; a directory the daemon writes into keeps room for a name.
PATH_MAX_BYTES = 4095
NAME_MAX_BYTES = 255
# MQTT strings (topics, client ids, user names) are UTF-8 of at most 65535 bytes; brokers refuse control characters
# and non-characters in them (mosquitto_validate_utf8), and '+' and '#' in the topic a message is published to.
MQTT_MAX_STRING_BYTES = 65535
# v4l2 cameras by number: Linux has /dev/video0 to /dev/video255 (VIDEO_NUM_DEVICES).
V4L2_DEVICES = 256
_MQTT_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ufdd0-\ufdef\ud800-\udfff"
                           + "".join(chr(plane * 0x10000 + low) for plane in range(17) for low in (0xfffe, 0xffff))
                           + "]")
# Topics the daemon publishes under mqtt.topic_prefix: {prefix}/{device_id}/{camera}/text, /review, /state and
# {prefix}/{device_id}/status, /stats; "review" is the longest last level.
_LONGEST_TOPIC_LEVEL = "review"
# A namespace URI or OPC UA user name beyond this is a mistake; every client reads them when it browses or logs in.
OPCUA_MAX_STRING_BYTES = 4096
# accept_patterns: OCR lines are short, so a longer pattern or a larger repeat count is a mistake, and the regex
# compiler fails on counts from 2**32 - 1 up (OverflowError) and on deep nesting (RecursionError). The total keeps
# compiling them all (a few microseconds a character, more when nested) well inside the second a check may take.
MAX_PATTERN_CHARS = 1000
MAX_PATTERN_REPEAT = 1000
MAX_PATTERNS_TOTAL_CHARS = 65536
_REPEAT_COUNT = re.compile(r"(?<!\\)\{(\d+)(?:,(\d*))?\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _leaves(value: Any, key: str = "") -> typing.Iterator[tuple[str, Any]]:
    """(key path, value) of every setting under a config section, list items one by one."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _leaves(getattr(value, f.name), _join(key, f.name))
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{key}[{i}]")
    else:
        yield key, value


def _check_leaves(cfg: Config) -> None:
    """Rules for every setting of a kind: text carries no NUL (no path, topic or C library takes one) and no lone
    surrogate (UTF-8 cannot encode it); a duration (*_s, *_ms) fits Python's timers."""
    for key, value in _leaves(cfg):
        if isinstance(value, str):
            bad = re.search("[\x00\ud800-\udfff]", value)
            if bad:
                raise ConfigError(key, f"{_shown(value)} holds U+{ord(bad.group()):04X} at character "
                                       f"{bad.start() + 1}, which no file name, topic or C library carries")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = value / 1000 if key.endswith("_ms") else value if key.endswith("_s") else 0
            _require(seconds <= MAX_DURATION_S, key, value,
                     f"is longer than {MAX_DURATION_S:.0f} s (about 31 years)")


def _check_path(key: str, path: Optional[str], writes_into: bool = False, suffix: str = "") -> None:
    """A path Linux can open: at most PATH_MAX_BYTES, each name at most NAME_MAX_BYTES. writes_into: a directory the
    daemon creates files in (room for one more name); suffix: what is appended to the name (SQLite's -journal)."""
    if not path:
        return
    raw = os.fsencode(path + suffix)
    room = NAME_MAX_BYTES + 1 if writes_into else 0
    _require(len(raw) + room <= PATH_MAX_BYTES, key, path,
             f"is {len(raw)} bytes long; Linux paths end at {PATH_MAX_BYTES}"
             + (f" and files go in it (at most {PATH_MAX_BYTES - room})" if writes_into else ""))
    longest = max(raw.split(b"/"), key=len)
    _require(len(longest) <= NAME_MAX_BYTES, key, path,
             f"has a name of {len(longest)} bytes{' with ' + suffix if suffix else ''}; "
             f"Linux file names end at {NAME_MAX_BYTES}")


def _check_paths(cfg: Config) -> None:
    """Every path the daemon opens or creates, as resolved against state_dir."""
    o, e, m = cfg.ocr, cfg.engines, cfg.mqtt
    _check_path("state_dir", cfg.state_dir, writes_into=True)
    for name in ("det_model", "rec_model", "cls_model", "dictionary"):
        _check_path(f"ocr.{name}", getattr(o, name))
    _check_path("ocr.cpu_fold_dir", o.cpu_fold_dir, writes_into=True)
    _check_path("engines.dir", e.dir, writes_into=True)
    _check_path("engines.timing_cache", e.timing_cache)
    for i, cam in enumerate(cfg.cameras):
        if cam.kind in ("file", "folder") or (cam.kind == "v4l2" and not cam.uri.isdigit()):
            _check_path(f"cameras[{i}].uri", cam.uri, writes_into=cam.kind == "folder")
        _check_path(f"cameras[{i}].done_dir", cam.done_dir, writes_into=True)
    for name in ("ca_file", "cert_file", "key_file"):
        _check_path(f"mqtt.tls.{name}", getattr(m.tls, name))
    _check_path("mqtt.password_file", m.password_file)
    for name in ("cert_file", "key_file", "password_file"):
        _check_path(f"opcua.{name}", getattr(cfg.opcua, name))
    _check_path("opcua.trusted_clients_dir", cfg.opcua.trusted_clients_dir)
    _check_path("outbox.path", cfg.outbox.path, suffix="-journal")
    _check_path("web.token_file", cfg.web.token_file)
    _check_path("web.saved_frames_dir", cfg.web.saved_frames_dir, writes_into=True)
    _check_path("evidence.dir", cfg.evidence.dir, writes_into=True)


def _check_listeners(cfg: Config) -> None:
    """The daemon's own servers (metrics, the page, OPC UA) do not ask for one port on one address: the second
    would fail to bind at start, and the page and metrics only log that."""
    listeners = [(key, host, port) for key, host, port, on in (
        ("metrics.port", cfg.metrics.host, cfg.metrics.port, cfg.metrics.enabled),
        ("web.port", cfg.web.host, cfg.web.port, cfg.web.enabled and cfg.web.port != 0),
        ("opcua.port", cfg.opcua.host, cfg.opcua.port, cfg.opcua.enabled)) if on]
    for i, (key, host, port) in enumerate(listeners):
        for other_key, other_host, other_port in listeners[:i]:
            _require(port != other_port or not _same_listen_address(host, other_host), key, port,
                     f"is {other_key} too (on {other_host!r} and {host!r})")


def _same_listen_address(a: str, b: str) -> bool:
    """Whether two listen addresses can collide: equal, either one all interfaces, or localhost and what it names."""
    return (a == b or bool({a, b} & {"", "0.0.0.0", "::", "[::]"})
            or ("localhost" in (a, b) and bool({a, b} & {"127.0.0.1", "::1", "[::1]"})))


def _check_host(key: str, host: str) -> None:
    """An IP address or a host name the resolver takes (labels of 1-63 characters, 253 in all); empty is left to
    each section's own rule."""
    if not host:
        return
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
        return
    except ValueError:
        pass
    try:
        ascii_name = host.encode("idna")
    except UnicodeError:
        ascii_name = b""
    _require(len(ascii_name) <= 253 and re.fullmatch(rb"[A-Za-z0-9_.-]+", ascii_name) is not None, key, host,
             "is not an IP address or a host name (letters, digits, '-', '.'; labels of 1-63 characters)")


def _mqtt_text_problem(text: str) -> Optional[str]:
    """Why an MQTT string cannot carry this text, or None."""
    bad = _MQTT_REFUSED.search(text)
    if bad:
        return f"holds U+{ord(bad.group()):04X} at character {bad.start() + 1}, which MQTT brokers refuse"
    size = len(text.encode("utf-8"))
    if size > MQTT_MAX_STRING_BYTES:
        return f"is {size} bytes in UTF-8; MQTT strings end at {MQTT_MAX_STRING_BYTES}"
    return None


def _check_mqtt_text(key: str, text: Optional[str]) -> None:
    if text is not None:
        problem = _mqtt_text_problem(text)
        _require(problem is None, key, text, problem or "")


def _check_topic_prefix(key: str, prefix: str, longest_topic: str) -> None:
    """A prefix that every topic under it can be published to: longest_topic is the longest of them."""
    _require(bool(prefix) and not re.search(r"[#+]", prefix) and not prefix.startswith(("/", "$"))
             and not prefix.endswith("/"), key, prefix,
             "is not a valid topic prefix (no '#', '+', leading '$', leading or trailing '/')")
    _check_mqtt_text(key, prefix)
    size = len(longest_topic.encode("utf-8"))
    _require(size <= MQTT_MAX_STRING_BYTES, key, prefix,
             f"makes topics of {size} bytes (…{longest_topic[-40:]}); MQTT topics end at {MQTT_MAX_STRING_BYTES}")


def _check_mqtt_names(cfg: Config) -> None:
    """Topics, client ids and the user name as an MQTT broker takes them."""
    m, device = cfg.mqtt, cfg.device_id or ""
    camera = max((c.name for c in cfg.cameras), key=len, default="")
    _check_topic_prefix("mqtt.topic_prefix", m.topic_prefix,
                        f"{m.topic_prefix}/{device}/{camera}/{_LONGEST_TOPIC_LEVEL}")
    for key, client_id in (("mqtt.client_id", m.client_id), ("sparkplug.client_id", cfg.sparkplug.client_id),
                           ("homeassistant.client_id", cfg.homeassistant.client_id)):
        _check_mqtt_text(key, client_id)
    _check_mqtt_text("mqtt.username", m.username)
    h = cfg.homeassistant
    if h.enabled:
        _check_topic_prefix("homeassistant.discovery_prefix", h.discovery_prefix,
                            f"{h.discovery_prefix}/sensor/{device}/{camera}/config")


def _check_opcua_text(key: str, text: str) -> None:
    bad = re.search("[\x00-\x1f\x7f-\x9f]", text)
    if bad:
        raise ConfigError(key, f"{_shown(text)} holds the control character U+{ord(bad.group()):04X}")
    size = len(text.encode("utf-8"))
    _require(size <= OPCUA_MAX_STRING_BYTES, key, text,
             f"is {size} bytes in UTF-8, more than {OPCUA_MAX_STRING_BYTES}")


def _check_patterns(cameras: tuple[CameraConfig, ...]) -> None:
    total = 0
    for i, cam in enumerate(cameras):
        for j, pattern in enumerate(cam.accept_patterns):
            key = f"cameras[{i}].accept_patterns[{j}]"
            total += len(pattern)
            _require(total <= MAX_PATTERNS_TOTAL_CHARS, key, pattern,
                     f"brings the accept patterns of all cameras over {MAX_PATTERNS_TOTAL_CHARS} characters")
            _check_pattern(key, pattern)


def _check_pattern(key: str, pattern: str) -> None:
    """An accept pattern that compiles, with bounds the compiler itself lacks."""
    _require(len(pattern) <= MAX_PATTERN_CHARS, key, pattern, f"is longer than {MAX_PATTERN_CHARS} characters")
    for match in _REPEAT_COUNT.finditer(pattern):
        count = max(int(n) for n in match.groups() if n)
        _require(count <= MAX_PATTERN_REPEAT, key, pattern,
                 f"repeats {count} times ({match.group()}); at most {MAX_PATTERN_REPEAT} (OCR lines are short)")
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        raise ConfigError(key, f"{_shown(pattern)} is not a valid regex ({exc})") from None


def _check_env_name(key: str, name: Optional[str]) -> None:
    if name is not None:
        _require(_ENV_NAME.fullmatch(name) is not None, key, name,
                 "is not an environment variable name (letters, digits, '_'; not starting with a digit)")


def _check_folders(cameras: tuple[CameraConfig, ...]) -> None:
    """Folder cameras: done_dir is not the watched folder (every file would be handed out again on every
    pass), and no two folder cameras watch one folder, or one's done_dir is another's folder. Each path is
    resolved once (symlinks and '..'; they need not exist yet): a thousand folder cameras check in milliseconds."""
    folders = [(i, cam, os.path.realpath(cam.uri)) for i, cam in enumerate(cameras)
               if cam.kind == "folder" and cam.uri]
    watched_by: dict[str, int] = {}
    for i, cam, real in folders:
        first = watched_by.setdefault(real, i)
        _require(first == i, f"cameras[{i}].uri", cam.uri, f"is already watched by cameras[{first}] "
                 f"({cameras[first].name}); two folder cameras would read the same files")
    for i, cam, real in folders:
        if cam.done_action != "move":
            continue
        done_dir = cam.done_dir or os.path.join(cam.uri, "done")
        other = watched_by.get(os.path.realpath(done_dir))
        if other == i:
            raise ConfigError(f"cameras[{i}].done_dir", f"{_shown(cam.done_dir)} is the watched folder itself "
                              f"(cameras[{i}].uri); use another directory, or done_action: delete or mark")
        if other is not None:
            raise ConfigError(f"cameras[{i}].done_dir", f"{_shown(done_dir)} is the folder watched by "
                              f"cameras[{other}] ({cameras[other].name}); its files would be read again")


def is_loopback_host(host: str) -> bool:
    """Whether a listen address only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_web(w: WebConfig) -> None:
    _require(bool(w.host), "web.host", w.host, "must not be empty")
    _check_host("web.host", w.host)
    _require(0 <= w.port < 65536, "web.port", w.port, "must be between 0 and 65535 (0 = any free port)")
    _require(not (w.token_env and w.token_file), "web.token_file", w.token_file,
             "cannot be set together with web.token_env")
    _check_env_name("web.token_env", w.token_env)
    if w.token_env:
        _require(w.token_env in os.environ, "web.token_env", w.token_env, "is not set in the environment")
        _require(len(os.environ[w.token_env].strip()) >= MIN_TOKEN_CHARS, "web.token_env", w.token_env,
                 f"holds a token shorter than {MIN_TOKEN_CHARS} characters")
    if w.token_file:
        _require(len(_read_secret("web.token_file", w.token_file)) >= MIN_TOKEN_CHARS, "web.token_file",
                 w.token_file, f"holds a token shorter than {MIN_TOKEN_CHARS} characters")
    _require(not w.enabled or is_loopback_host(w.host) or bool(w.token_env or w.token_file), "web.host", w.host,
             "is not a loopback address: set web.token_env or web.token_file (an access token), "
             "or keep 127.0.0.1 and reach the page over an SSH tunnel")
    for name in ("recent_readings", "recent_rejects"):
        v = getattr(w, name)
        _require(1 <= v <= 1000, f"web.{name}", v, "must be between 1 and 1000")
    _require(100 <= w.refresh_ms <= 60_000, "web.refresh_ms", w.refresh_ms, "must be between 100 and 60000")
    _require(1 <= w.threads <= 32, "web.threads", w.threads, "must be between 1 and 32")
    _require(w.frame_max_side_px >= 64, "web.frame_max_side_px", w.frame_max_side_px, "must be at least 64")
    _require(bool(w.saved_frames_dir), "web.saved_frames_dir", w.saved_frames_dir, "must not be empty")
    _require(w.max_saved_frames >= 1, "web.max_saved_frames", w.max_saved_frames, "must be at least 1")


def _check_evidence(e: EvidenceConfig) -> None:
    _require(bool(e.dir), "evidence.dir", e.dir, "must not be empty")
    _require(e.max_bytes >= 1024 * 1024, "evidence.max_bytes", e.max_bytes, "must be at least 1048576 (1 MiB)")
    _require(e.ttl_s >= 0, "evidence.ttl_s", e.ttl_s, "must not be negative")
    _require(e.min_free_bytes >= 0, "evidence.min_free_bytes", e.min_free_bytes, "must not be negative")
    _require(e.frame_max_side_px == 0 or e.frame_max_side_px >= 64, "evidence.frame_max_side_px",
             e.frame_max_side_px, "must be 0 (as captured) or at least 64")
    _require(1 <= e.jpeg_quality <= 100, "evidence.jpeg_quality", e.jpeg_quality, "must be between 1 and 100")
    _require(1 <= e.queue_size <= 1024, "evidence.queue_size", e.queue_size, "must be between 1 and 1024")
    _require(0.0 <= e.review_below_confidence <= 1.0, "evidence.review_below_confidence",
             e.review_below_confidence, "must be between 0 (off) and 1")


def _check_sinks(cfg: Config) -> None:
    o = cfg.opcua
    if o.enabled:
        _require(bool(o.host), "opcua.host", o.host, "must not be empty")
        _check_host("opcua.host", o.host)
        _require(0 < o.port < 65536, "opcua.port", o.port, "must be between 1 and 65535")
        _require(bool(o.namespace_uri), "opcua.namespace_uri", o.namespace_uri, "must not be empty")
        _check_opcua_text("opcua.namespace_uri", o.namespace_uri)
        _require(bool(o.cert_file) and bool(o.key_file), "opcua.cert_file", o.cert_file,
                 "and opcua.key_file must both be set")
        _require(bool(o.username), "opcua.username", o.username, "must not be empty")
        _check_opcua_text("opcua.username", o.username)
        _require(not (o.password_env and o.password_file), "opcua.password_file", o.password_file,
                 "cannot be set together with opcua.password_env")
        _require(bool(o.password_env or o.password_file), "opcua.password_env", o.password_env,
                 "or opcua.password_file must name the password of opcua.username")
        _check_env_name("opcua.password_env", o.password_env)
        if o.password_env:
            _require(bool(os.environ.get(o.password_env)), "opcua.password_env", o.password_env,
                     "is not set (or empty) in the environment")
        if o.password_file:
            _require(bool(_read_secret("opcua.password_file", o.password_file)), "opcua.password_file",
                     o.password_file, "is empty")
        _require(o.trusted_clients_dir is None or os.path.isdir(o.trusted_clients_dir), "opcua.trusted_clients_dir",
                 o.trusted_clients_dir, "is not a directory")
    s = cfg.sparkplug
    if s.enabled:
        _require(_valid_name(s.group_id), "sparkplug.group_id", s.group_id, _NAME_RULE)
        _require(s.edge_node_id is None or _valid_name(s.edge_node_id), "sparkplug.edge_node_id", s.edge_node_id,
                 _NAME_RULE)
    h = cfg.homeassistant
    if h.enabled:
        _require(cfg.mqtt.enabled, "homeassistant.enabled", h.enabled,
                 "needs mqtt.enabled: true (the sensors' availability is the mqtt status topic)")


def validate(cfg: Config) -> Config:
    """Checks values that types alone cannot; returns cfg unchanged or raises ConfigError."""
    _check_leaves(cfg)
    _require(cfg.device_id is not None and _valid_name(cfg.device_id), "device_id", cfg.device_id, _NAME_RULE)
    o = cfg.ocr
    for name in ("det_model", "rec_model", "cls_model", "dictionary"):
        _check_readable(f"ocr.{name}", getattr(o, name))
    for i, v in enumerate(o.det_input_size):
        _require(v >= 32 and v % 32 == 0, f"ocr.det_input_size[{i}]", v, "must be a multiple of 32, at least 32")
    _require(o.det_batch >= 1, "ocr.det_batch", o.det_batch, "must be at least 1")
    _require(o.rec_batch >= 1, "ocr.rec_batch", o.rec_batch, "must be at least 1")
    _require(o.rec_tail_batch == 0 or 1 <= o.rec_tail_batch < o.rec_batch, "ocr.rec_tail_batch", o.rec_tail_batch,
             f"must be 0 (off) or between 1 and ocr.rec_batch - 1 ({o.rec_batch - 1})")
    _require(o.cpu_rec_batch == 0 or o.cpu_rec_batch > o.rec_tail_batch, "ocr.cpu_rec_batch", o.cpu_rec_batch,
             f"must be 0 (automatic) or more than ocr.rec_tail_batch ({o.rec_tail_batch})")
    _require(o.rec_height >= 8, "ocr.rec_height", o.rec_height, "must be at least 8")
    _require(o.rec_width >= o.rec_height, "ocr.rec_width", o.rec_width, "must be at least rec_height")
    for name in ("det_threshold", "det_box_threshold", "cls_threshold", "drop_score"):
        v = getattr(o, name)
        _require(0.0 <= v <= 1.0, f"ocr.{name}", v, "must be between 0 and 1")
    _require(o.det_unclip_ratio > 0, "ocr.det_unclip_ratio", o.det_unclip_ratio, "must be positive")
    _require(o.det_min_size >= 1, "ocr.det_min_size", o.det_min_size, "must be at least 1")
    _require(o.det_max_candidates >= 1, "ocr.det_max_candidates", o.det_max_candidates, "must be at least 1")
    _require(o.threads >= 0, "ocr.threads", o.threads, "must be 0 (automatic) or more")
    _require(o.frames_in_flight in (0, 1, 2), "ocr.frames_in_flight", o.frames_in_flight, "must be 0 (automatic), 1 or 2")
    _require(cfg.state_dir is None or os.path.isabs(cfg.state_dir), "state_dir", cfg.state_dir,
             "must be an absolute path (or null for the working directory)")
    _require(cfg.engines.workspace_mib >= 64, "engines.workspace_mib", cfg.engines.workspace_mib, "must be at least 64")
    _require(cfg.gpu.streams in (1, 2, 3), "gpu.streams", cfg.gpu.streams, "must be 1, 2 or 3")
    _require(cfg.gpu.batch_wait_ms >= 0, "gpu.batch_wait_ms", cfg.gpu.batch_wait_ms, "must not be negative")

    _require(len(cfg.cameras) >= 1, "cameras", list(cfg.cameras), "must list at least one camera")
    seen: set[str] = set()
    for i, cam in enumerate(cfg.cameras):
        key = f"cameras[{i}]"
        _require(_valid_name(cam.name), f"{key}.name", cam.name, _NAME_RULE)
        _require(cam.name not in seen, f"{key}.name", cam.name, "is used by another camera")
        seen.add(cam.name)
        _require(bool(cam.uri) or cam.kind == "sample", f"{key}.uri", cam.uri, f"must be set for kind {cam.kind}")
        _require(not (cam.kind == "v4l2" and cam.uri.isdigit())
                 or (len(cam.uri) <= 3 and cam.uri.isascii() and int(cam.uri) < V4L2_DEVICES), f"{key}.uri", cam.uri,
                 f"is neither a /dev/video index (0-{V4L2_DEVICES - 1}) nor a device path")
        _require(len(cam.roi) in (0, 4), f"{key}.roi", list(cam.roi), "must be [x, y, width, height] or empty")
        if cam.roi:
            _require(cam.roi[0] >= 0 and cam.roi[1] >= 0 and cam.roi[2] > 0 and cam.roi[3] > 0,
                     f"{key}.roi", list(cam.roi), "needs x, y >= 0 and width, height > 0")
        _require(cam.max_fps >= 0, f"{key}.max_fps", cam.max_fps, "must not be negative")
        _require(0 < cam.reconnect_initial_s <= cam.reconnect_max_s, f"{key}.reconnect_initial_s",
                 cam.reconnect_initial_s, "must be positive and not above reconnect_max_s")
        _require(cam.watchdog_s >= 0, f"{key}.watchdog_s", cam.watchdog_s, "must not be negative")
        _require(0.0 <= cam.min_confidence <= 1.0, f"{key}.min_confidence", cam.min_confidence, "must be between 0 and 1")
        _require(cam.dedup_window_s >= 0, f"{key}.dedup_window_s", cam.dedup_window_s, "must not be negative")
        _require(not (cam.kind == "folder" and cam.publish_mode == "consensus"), f"{key}.publish_mode",
                 cam.publish_mode, "is not available for kind folder (one reading per file, acknowledged at once)")
        _require(cam.leave_after_frames >= 1, f"{key}.leave_after_frames", cam.leave_after_frames, "must be at least 1")
        _require(cam.leave_after_s > 0, f"{key}.leave_after_s", cam.leave_after_s, "must be positive")
        _require(cam.max_wait_s > 0, f"{key}.max_wait_s", cam.max_wait_s, "must be positive")
        for j, name in enumerate(cam.accept_formats):
            _require(name in FORMATS, f"{key}.accept_formats[{j}]", name, f"is not one of {', '.join(FORMATS)}")
        for j, name in enumerate(cam.codes):
            _require(name in CODE_FORMATS, f"{key}.codes[{j}]", name, f"is not one of {', '.join(CODE_FORMATS)}")
        _require(cam.unreadable_after_s >= 0, f"{key}.unreadable_after_s", cam.unreadable_after_s,
                 "must not be negative")
        _require(cam.max_frame_pixels >= 0, f"{key}.max_frame_pixels", cam.max_frame_pixels,
                 "must be 0 (no limit) or a pixel count")
        _require(cam.max_file_bytes >= 0, f"{key}.max_file_bytes", cam.max_file_bytes,
                 "must be 0 (no limit) or a size in bytes")
    _check_folders(cfg.cameras)
    _check_patterns(cfg.cameras)

    m = cfg.mqtt
    _require(bool(m.host), "mqtt.host", m.host, "must not be empty")
    _check_host("mqtt.host", m.host)
    _require(0 < m.port < 65536, "mqtt.port", m.port, "must be between 1 and 65535")
    _check_mqtt_names(cfg)
    _require(5 <= m.keepalive_s <= MAX_KEEPALIVE_S, "mqtt.keepalive_s", m.keepalive_s,
             f"must be between 5 and {MAX_KEEPALIVE_S} (MQTT's Keep Alive is 16 bits)")
    limit = max_inflight_limit(len(cfg.cameras))
    _require(1 <= m.max_inflight <= limit, "mqtt.max_inflight", m.max_inflight,
             f"must be between 1 and {limit} (MQTT packet ids; SQLite binds up to 2 x max_inflight + cameras + 1 "
             f"of its {SQLITE_MAX_VARIABLES} parameters in one outbox query)")
    _require(0 < m.reconnect_min_s <= m.reconnect_max_s, "mqtt.reconnect_min_s", m.reconnect_min_s,
             "must be positive and not above reconnect_max_s")
    _require(m.stats_interval_s >= 0, "mqtt.stats_interval_s", m.stats_interval_s, "must not be negative")
    _require(1024 <= m.max_payload_bytes <= 268_435_455, "mqtt.max_payload_bytes", m.max_payload_bytes,
             "must be between 1024 and 268435455 (MQTT's largest packet)")
    _require(not (m.password_env and m.password_file), "mqtt.password_file", m.password_file,
             "cannot be set together with mqtt.password_env")
    _check_env_name("mqtt.password_env", m.password_env)
    if m.password_env:
        _require(m.password_env in os.environ, "mqtt.password_env", m.password_env, "is not set in the environment")
        _require(len(os.environb.get(os.fsencode(m.password_env), b"")) <= MQTT_MAX_STRING_BYTES,
                 "mqtt.password_env", m.password_env, f"holds a password over {MQTT_MAX_STRING_BYTES} bytes (MQTT's)")
    if m.password_file:
        _read_secret("mqtt.password_file", m.password_file)
    _require(m.tls.enabled or not m.tls.insecure, "mqtt.tls.insecure", m.tls.insecure,
             "needs mqtt.tls.enabled: true (without TLS there is no certificate to skip checking)")
    if m.tls.enabled:
        _check_readable("mqtt.tls.ca_file", m.tls.ca_file)
        _check_readable("mqtt.tls.cert_file", m.tls.cert_file)
        _check_readable("mqtt.tls.key_file", m.tls.key_file)
        _require(bool(m.tls.cert_file) == bool(m.tls.key_file), "mqtt.tls.key_file", m.tls.key_file,
                 "and mqtt.tls.cert_file must be set together (mutual TLS)")

    ob = cfg.outbox
    _require(bool(ob.path), "outbox.path", ob.path, "must not be empty")
    _require(ob.max_rows >= 1, "outbox.max_rows", ob.max_rows, "must be at least 1")
    _require(ob.max_bytes >= 4096, "outbox.max_bytes", ob.max_bytes, "must be at least 4096")
    _require(ob.ttl_s >= 0, "outbox.ttl_s", ob.ttl_s, "must not be negative")
    _require(ob.dead_letter_after_failures >= 1, "outbox.dead_letter_after_failures",
             ob.dead_letter_after_failures, "must be at least 1")
    _check_host("metrics.host", cfg.metrics.host)
    _require(0 < cfg.metrics.port < 65536, "metrics.port", cfg.metrics.port, "must be between 1 and 65535")
    _check_sinks(cfg)
    _check_web(cfg.web)
    _check_listeners(cfg)
    _check_evidence(cfg.evidence)
    _require(cfg.service.drain_timeout_s >= 0, "service.drain_timeout_s", cfg.service.drain_timeout_s,
             "must not be negative")
    _require(cfg.service.stall_timeout_s > 0, "service.stall_timeout_s", cfg.service.stall_timeout_s,
             "must be positive")
    _require(cfg.service.max_undelivered_age_s > 0, "service.max_undelivered_age_s",
             cfg.service.max_undelivered_age_s, "must be positive")
    _check_paths(resolve_state_paths(cfg))
    return cfg


def config_warnings(cfg: Config) -> list[tuple[str, str]]:
    """(key path, message) for values that work but are risky; load() logs each at WARNING. Pure."""
    found = []
    m = cfg.mqtt
    if m.enabled and not m.tls.enabled:
        for key in ("password_env", "password_file"):
            if getattr(m, key):
                found.append((f"mqtt.{key}", f"{getattr(m, key)!r}: the MQTT password goes to "
                              f"{m.host}:{m.port} in clear text (mqtt.tls.enabled is false)"))
    return found


# An app-specific id instead of the raw machine id, which is meant to stay private (machine-id(5)): the same
# HMAC that `systemd-id128 machine-id --app-specific=d4fe280a3c034496bd9a9c0e3cbfcce4` prints.
_DEVICE_APP_ID = bytes.fromhex("d4fe280a3c034496bd9a9c0e3cbfcce4")


def machine_device_id(machine_id: Optional[str], hostname: str) -> str:
    """The default device_id: ``ocr-<first 8 hex of the app-specific machine id>``; the hostname (cut to a
    valid topic level) when there is no usable machine id (containers, an empty /etc/machine-id on a first
    boot image). Pure: the caller reads the file and the hostname."""
    text = (machine_id or "").strip().lower()
    if re.fullmatch(r"[0-9a-f]{32}", text) and text != "0" * 32:
        digest = hmac.new(bytes.fromhex(text), _DEVICE_APP_ID, hashlib.sha256).hexdigest()
        return f"ocr-{digest[:8]}"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", hostname.split(".", 1)[0])[:64]
    return name if _valid_name(name) else "ocr-edge"


def _read_machine_id(path: str = "/etc/machine-id") -> Optional[str]:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def resolve_device_id(cfg: Config, machine_id: Optional[str], hostname: str) -> Config:
    """cfg with a null device_id replaced by machine_device_id(); a configured one is kept. Pure."""
    if cfg.device_id is not None:
        return cfg
    return dataclasses.replace(cfg, device_id=machine_device_id(machine_id, hostname))


def resolve_state_paths(cfg: Config) -> Config:
    """cfg with relative outbox.path, engines.dir, engines.timing_cache, ocr.cpu_fold_dir, evidence.dir and
    web.saved_frames_dir joined onto state_dir.

    Absolute paths are kept; with state_dir null nothing changes (relative paths stay relative to the
    working directory, which is the state directory under systemd). Pure: touches no file.
    """
    if cfg.state_dir is None:
        return cfg

    def under_state(path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(cfg.state_dir, path)

    ocr = dataclasses.replace(cfg.ocr, cpu_fold_dir=None if cfg.ocr.cpu_fold_dir is None
                              else under_state(cfg.ocr.cpu_fold_dir))
    engines = dataclasses.replace(
        cfg.engines, dir=under_state(cfg.engines.dir),
        timing_cache=None if cfg.engines.timing_cache is None else under_state(cfg.engines.timing_cache))
    outbox = dataclasses.replace(cfg.outbox, path=under_state(cfg.outbox.path))
    evidence = dataclasses.replace(cfg.evidence, dir=under_state(cfg.evidence.dir))
    web = dataclasses.replace(cfg.web, saved_frames_dir=under_state(cfg.web.saved_frames_dir))
    opcua = dataclasses.replace(cfg.opcua, cert_file=under_state(cfg.opcua.cert_file),
                                key_file=under_state(cfg.opcua.key_file),
                                trusted_clients_dir=None if cfg.opcua.trusted_clients_dir is None
                                else under_state(cfg.opcua.trusted_clients_dir))
    return dataclasses.replace(cfg, ocr=ocr, engines=engines, outbox=outbox, evidence=evidence, web=web,
                               opcua=opcua)


def from_dict(data: Any) -> Config:
    cfg = _build(Config, data, "")
    if cfg.device_id is None:   # read only when needed: /etc/machine-id, the hostname
        cfg = resolve_device_id(cfg, _read_machine_id(), socket.gethostname())
    return resolve_state_paths(validate(cfg))


# ---------------------------------------------------------------- reading the file: bounded, whatever the bytes

# The file, its YAML and the secrets a config names are read within these bounds, so that a hostile or broken file
# ends in one ConfigError line within a second and a few MiB, never a traceback, a hang or a memory climb.
# A real config is a few KiB, 4 levels deep, and about 60 values a camera with every key written out.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 32
MAX_YAML_VALUES = 10_000   # keys and values, each alias as what it copies: what the walk and the checks visit
# A number no setting can hold (int64 has 19 digits); PyYAML would build any size, and int() refuses 4300 digits.
MAX_NUMBER_CHARS = 64
# What the YAML reader accepts (YAML 1.1's printable set); anything else is named with its line and column.
_NOT_YAML_TEXT = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_config_text(path: str | os.PathLike) -> str:
    """The config file's text: a regular file of at most MAX_CONFIG_BYTES, UTF-8 (a UTF-8 byte order mark is
    skipped), only characters YAML accepts."""
    data = _read_regular_file("", path, MAX_CONFIG_BYTES, "the file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError("", "the file is UTF-16 or UTF-32 (it starts with that byte order mark); save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError("", f"line {line}: byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8") \
            from None
    bad = _NOT_YAML_TEXT.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        hint = " (a UTF-16 file without a byte order mark?)" if bad.group() == "\0" else ""
        raise ConfigError("", f"line {line}, column {column}: character U+{ord(bad.group()):04X} is not allowed "
                              f"in YAML{hint}")
    return text


def _open_regular_file(key: str, path: str | os.PathLike, what: str) -> int:
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


def _read_regular_file(key: str, path: str | os.PathLike, max_bytes: int, what: str) -> bytes:
    """The bytes of a regular file of at most max_bytes; `what` names it in the message."""
    fd = _open_regular_file(key, path, what)
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


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


class _YamlShape:
    """One pass over the YAML events, before anything is built: bounds the nesting, the values with every alias
    expanded (a "billion laughs" is refused at its first level over the bound, not after 10^9 copies) and the
    length of numbers, and knows the key path of the event it is at, for the message."""

    class _Frame:
        __slots__ = ("is_map", "children", "key", "start", "anchor", "depth_below")

        def __init__(self, is_map: bool, start: int, anchor: Optional[str]):
            self.is_map, self.children, self.key = is_map, 0, "?"
            self.start, self.anchor, self.depth_below = start, anchor, 0

    def __init__(self):
        self.stack: list[_YamlShape._Frame] = []
        self.anchors: dict[str, tuple[int, int]] = {}   # name -> (values it expands to, its depth)
        self.values = 0
        self.resolver = yaml.resolver.Resolver()

    def path(self) -> str:
        """The key path of the next event's position ("cameras[0].uri"); a key's own map while at a key."""
        parts = []
        for frame in self.stack:
            if not frame.is_map:
                parts.append(f"[{frame.children}]")
            elif frame.children % 2:
                parts.append(f".{frame.key}" if parts else frame.key)
            else:
                break
        return "".join(parts)

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.path(), message)

    def walk(self, text: str, stop_at: Optional[tuple[int, int]] = None) -> Optional[str]:
        """Checks the bounds over the whole text (raising ConfigError); with stop_at (line, column), the key path
        of the node that starts there instead."""
        try:
            for event in yaml.parse(text, Loader=_YAML_LOADER):
                if stop_at is not None and (event.start_mark.line, event.start_mark.column) == stop_at:
                    return self.path()
                self._take(event)
        except yaml.YAMLError as exc:
            raise self.error(_yaml_problem(exc)) from None
        return None

    def _take(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.ScalarEvent):
            self._check_number(event)
            self._count(1)
            if event.anchor:
                self.anchors[event.anchor] = (1, 0)
            self._done(0, event.value)
        elif isinstance(event, yaml.AliasEvent):
            if any(f.anchor == event.anchor for f in self.stack):
                raise self.error(f"alias *{_key_text(event.anchor)} refers to a collection it is in (endless)")
            size, depth = self.anchors.get(event.anchor, (1, 0))
            if len(self.stack) + depth > MAX_YAML_DEPTH:
                raise self.error(f"alias *{_key_text(event.anchor)} nests values over {MAX_YAML_DEPTH} levels deep")
            self._count(size)
            self._done(depth, None)
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(self.stack) >= MAX_YAML_DEPTH:
                raise self.error(f"values are nested more than {MAX_YAML_DEPTH} levels deep")
            self._count(1)
            self.stack.append(self._Frame(isinstance(event, yaml.MappingStartEvent), self.values - 1, event.anchor))
        elif isinstance(event, yaml.CollectionEndEvent):
            frame = self.stack.pop()
            size, depth = self.values - frame.start, frame.depth_below + 1
            if frame.anchor:
                self.anchors[frame.anchor] = (size, depth)
            self._done(depth, None)

    def _count(self, n: int) -> None:
        self.values += n
        if self.values > MAX_YAML_VALUES:
            raise self.error(f"the file holds more than {MAX_YAML_VALUES} keys and values "
                             "(each alias counted as what it copies)")

    def _done(self, depth: int, scalar: Optional[str]) -> None:
        """A node ended: it is its parent's next child (a key or a value in a mapping)."""
        if not self.stack:
            return
        parent = self.stack[-1]
        if parent.is_map and parent.children % 2 == 0:
            parent.key = _key_text(scalar) if scalar is not None else "?"
        parent.children += 1
        parent.depth_below = max(parent.depth_below, depth)

    def _check_number(self, event: yaml.ScalarEvent) -> None:
        if len(event.value) <= MAX_NUMBER_CHARS:
            return
        tag = event.tag if not event.implicit[0] else self.resolver.resolve(yaml.ScalarNode, event.value, (True, False))
        if tag in _NUMBER_TAGS:
            raise self.error(f"a number of {len(event.value)} characters ({_shown(event.value)}); "
                             f"no setting takes one over {MAX_NUMBER_CHARS}")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: where it is and what is wrong."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    what = ", ".join(p for p in parts if p) or str(exc).splitlines()[0]
    return f"{where}not valid YAML: {what}"


class _BoundedLoader(_YAML_LOADER):
    """The safe loader whose value constructors cannot escape with a bare exception: a timestamp like 2024-13-45
    (ValueError), a bad !!timestamp (AttributeError) or the like becomes a ConstructorError with its position."""

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError, RecursionError, LookupError) as exc:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read {node.tag.rsplit(':', 1)[-1]} "
                                                    f"{_shown(getattr(node, 'value', ''))} ({exc})",
                                                    node.start_mark) from None


def _parse_yaml(text: str) -> Any:
    """The YAML document as Python data, or a ConfigError naming the key path (and line) of the first problem."""
    _YamlShape().walk(text)
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        key = _YamlShape().walk(text, (mark.line, mark.column)) if mark is not None else ""
        raise ConfigError(key or "", _yaml_problem(exc)) from None
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError, LookupError) as exc:
        raise ConfigError("", f"not valid YAML: {exc}") from None   # outside any one value: a bug in PyYAML


def load(path: str | os.PathLike) -> Config:
    """Reads and validates a config file; relative state paths resolve against state_dir (resolve_state_paths)."""
    cfg = from_dict(_parse_yaml(_read_config_text(path)))
    for key, message in config_warnings(cfg):
        log.warning("config %s: %s: %s", path, key, message)
    return cfg


def load_or_defaults(path: str | os.PathLike | None) -> Config:
    """The config file when one is named, else the built-in defaults (for one-shot commands)."""
    return load(path) if path else from_dict({})


# ---------------------------------------------------------------- secrets: read here and only here

# A password or token file (a systemd credential) is a few dozen bytes; a bound keeps /dev/zero or a log file named
# by mistake from being read into memory.
MAX_SECRET_BYTES = 4096


def _read_secret(key: str, path: str) -> str:
    """The stripped text of a secret file: a regular file of at most MAX_SECRET_BYTES, UTF-8. Never logged."""
    data = _read_regular_file(key, path, MAX_SECRET_BYTES, _shown(path))
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(key, f"{_shown(path)} is not UTF-8 text") from None


def mqtt_password(m: MqttConfig) -> Optional[str]:
    """The broker password from the configured environment variable or file; never logged."""
    if m.password_env:
        return os.environ.get(m.password_env)
    if m.password_file:
        return _read_secret("mqtt.password_file", m.password_file)
    return None


def opcua_password(o: OpcUaConfig) -> Optional[str]:
    """The OPC UA user's password from the configured environment variable or file; never logged."""
    if o.password_env:
        return os.environ.get(o.password_env) or None
    if o.password_file:
        return _read_secret("opcua.password_file", o.password_file) or None
    return None


def web_token(w: WebConfig) -> Optional[str]:
    """The page's access token from the configured environment variable or file; never logged."""
    if w.token_env:
        return os.environ.get(w.token_env, "").strip() or None
    if w.token_file:
        return _read_secret("web.token_file", w.token_file) or None
    return None
