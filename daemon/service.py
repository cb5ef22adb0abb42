"""`ocr-daemon run`: the long-running service. Cameras -> OCR -> filters -> outbox -> MQTT, under systemd.

Threads: one capture thread per camera (daemon/sources) hands frames to a FrameHub; this module's work loop
runs in the main thread and is the only one that touches the OCR backend (TensorRT's CUDA context belongs
to one thread): it takes the frames of every camera that is ready, up to the detector's fixed batch,
waiting at most gpu.batch_wait_ms for stragglers, runs them as one batch, filters each result, and writes
accepted readings to the outbox (durable on return) before waking the MQTT publisher. Signal handlers
only set flags that the loop reads between batches.

Signals: SIGTERM (and SIGINT) stop the cameras, OCR the frames already handed over, let the publisher
drain the outbox for at most service.drain_timeout_s in all, then exit 0 with the rest left on disk for
the next start; labels a consensus camera (daemon/consensus.py) is still voting on are published first. SIGHUP
re-reads the config file; a bad one is logged and rejected (the old one keeps running); a good, changed one first
publishes the labels being voted on (with the running filters and outbox), then restarts only what changed
(cameras, filters, publisher/outbox, OCR models, metrics).

The page and the evidence (issue 13): the loop hands each OCR'd frame to daemon/web/live.py and each stored
reading's frame to daemon/evidence.py as references (a lock and a deque append; a put_nowait on a bounded queue);
drawing and JPEG encoding happen in the page's request threads and the evidence writer thread, never here.

Progress (what the systemd watchdog and /healthz mean): the work loop sends WATCHDOG=1 only while
 - a frame went through OCR and the filters within service.stall_timeout_s, or
 - every camera is idle by design (an image folder with nothing new) and its capture thread polled
   within stall_timeout_s.
So a hung backend, a wedged loop or a capture thread stuck in a driver stop the pings and systemd restarts
the daemon. A single dead camera among working ones does not (the others make progress; its own source
reconnects with backoff and its watchdog restarts it); all cameras dead for stall_timeout_s do, since a
fresh process also re-initializes the capture stack (V4L2, nvargus), the one thing left to try.
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Optional

from daemon import config as config_mod
from daemon.config import CameraConfig, Config, ConfigError, publish_mode
from daemon.consensus import FinishedLabel, LabelTracker
from daemon.health import DeliveryClock, DeliveryFacts, Verdict, assess, observe
from daemon.results_filter import FilterRules, ResultFilter
from daemon.sd_notify import Notifier, watchdog_interval_s
from daemon.sources import NO_ACK, CaptureSource, Frame, FrameHub, make_source

if TYPE_CHECKING:   # the pipeline (OpenCV, ONNX Runtime) loads in start(), not when the CLI parses
    from daemon.ocr.pipeline import Submitted

log = logging.getLogger("daemon.service")

FIRST_FRAME_WAIT_S = 0.25   # the loop wakes at least this often for watchdogs, signals and stats
STATUS_PERIOD_S = 5.0       # systemd STATUS= line
FPS_WINDOW_S = 5.0
LATENCY_WINDOW = 512        # samples per stage for the p50/p95 in stats
_FILTER_FIELDS = ("min_confidence", "accept_patterns", "accept_formats", "codes", "dedup_window_s", "publish_empty",
                  "publish_mode", "leave_after_frames", "leave_after_s", "max_wait_s")


def add_arguments(parser) -> None:
    parser.add_argument("--config", default="config.yaml", metavar="FILE",
                        help="config file (default: ./config.yaml); SIGHUP re-reads it")


def main(args) -> int:
    try:
        cfg = config_mod.load(args.config)
    except ConfigError as exc:
        log.error("invalid config %s: %s", args.config, exc)
        return 2
    if getattr(args, "log_level", None) is None:
        logging.getLogger().setLevel(cfg.service.log_level)
    service = Service(cfg, args.config)
    try:
        service.start()
    except ConfigError as exc:
        log.error("invalid config %s: %s", args.config, exc)
        service.close()
        return 2
    except Exception as exc:
        log.error("cannot start: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        service.close()
        return 1
    return service.run()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a small sample; 0 for none."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100.0 * len(s) + 0.5)) - 1))]


def _source_part(cam: CameraConfig) -> CameraConfig:
    """The camera config without its filter fields: a change here needs the source restarted."""
    defaults = CameraConfig()
    return dataclasses.replace(cam, **{f: getattr(defaults, f) for f in _FILTER_FIELDS})


@dataclasses.dataclass
class _CameraStats:
    frames: int = 0
    stored: int = 0
    rejected: Counter = dataclasses.field(default_factory=Counter)
    noted: Counter = dataclasses.field(default_factory=Counter)   # check_digit_corrected, code_confirmed, code_mismatch
    reviewed: int = 0   # stored readings whose id also went to the review topic
    recent: deque = dataclasses.field(default_factory=deque)   # processing times (monotonic) in the fps window

    def fps(self, now: float) -> float:
        while self.recent and now - self.recent[0] > FPS_WINDOW_S:
            self.recent.popleft()
        return len(self.recent) / FPS_WINDOW_S


class Service:
    def __init__(self, cfg: Config, config_path: str, notifier: Optional[Notifier] = None):
        self.cfg = cfg
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.hub = FrameHub()
        self.sources: dict[str, CaptureSource] = {}
        self.filters: dict[str, ResultFilter] = {}
        self.trackers: dict[str, LabelTracker] = {}   # cameras with publish_mode consensus (daemon/consensus.py)
        self.pipeline = None
        self.outbox = None
        self.publisher = None     # the MQTT sink's publisher (stats topic, delivery clock); None with MQTT off
        self.sinks: dict = {}     # every output, MQTT included (daemon/publish/sinks)
        self.metrics = None
        self.metrics_server = None
        self.page = None          # the local page (daemon/web/page.py); None with web off
        self.live = None          # the page's view of each camera (daemon/web/live.py); None with web off
        self.evidence = None      # the evidence store (daemon/evidence.py), or NoEvidence with it off
        self._stats_lock = threading.Lock()   # the HTTP thread reads what the loop writes
        self._cam_stats: dict[str, _CameraStats] = {}
        self._latency: dict[str, deque] = {}
        self._retired = Counter()             # counters of sources that were stopped by a reload
        self._stop = threading.Event()
        self._reload = False
        self._started_at = time.monotonic()
        self._last_progress = time.monotonic()
        # When delivery last moved (ack, connect, empty outbox): wedged vs. draining a backlog (daemon/health.py).
        # The loop, the HTTP thread and the stats read it: one lock.
        self._delivery_lock = threading.Lock()
        self._delivery_clock = DeliveryClock(moved_at=time.monotonic())
        self._watchdog_withheld: tuple[str, ...] = ()   # reasons last logged for not pinging systemd
        # A detector batch submitted to the GPU and not finished yet (only when the pipeline overlaps).
        self._in_flight: Optional[tuple[list[Frame], Submitted]] = None

    # ------------------------------------------------------------ start and stop

    def start(self) -> None:
        from daemon.metrics import Metrics
        from daemon.ocr.pipeline import OcrPipeline
        from daemon.publish.outbox import Outbox
        from daemon.publish.sinks import sink_names

        cfg = self.cfg
        # First: a SIGTERM while the models load or the sinks already replay the outbox (systemd stopping a
        # unit that is still starting) is a clean stop once run() begins, not the default kill.
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        self.notifier.status("loading models")
        self.outbox = Outbox(cfg.outbox, sinks=sink_names(cfg))
        self.pipeline = OcrPipeline.from_config(cfg)   # the slow part: models load once, here
        self.metrics = Metrics(self.snapshot)
        self._start_metrics_server()
        self._start_evidence()
        self._start_web()
        self._start_publisher()
        for cam in cfg.cameras:
            self._start_camera(cam)
        self._last_progress = time.monotonic()   # a grace period of stall_timeout_s for cameras to come up
        engine = self.pipeline.describe()
        backend = self.backend_info()
        log.info("running: %d camera(s), backend %s (%s), mqtt %s", len(cfg.cameras), engine, backend["reason"],
                 f"{cfg.mqtt.host}:{cfg.mqtt.port}" if cfg.mqtt.enabled else "disabled (outbox only)")
        self.notifier.ready(f"running {len(cfg.cameras)} camera(s) on {engine.get('backend', '?')}"
                            + (" (CPU fallback, see /healthz)" if backend["degraded"] else ""))

    def _start_metrics_server(self) -> None:
        from daemon.metrics import MetricsServer

        m = self.cfg.metrics
        if not m.enabled:
            return
        try:
            self.metrics_server = MetricsServer(self.metrics, self.health, m.host, m.port).start()
            log.info("metrics on http://%s:%d/metrics and /healthz", m.host, self.metrics_server.port)
        except OSError as exc:   # metrics are for looking at; the readings matter more
            log.error("metrics server on %s:%d not started: %s", m.host, m.port, exc)

    def _start_evidence(self) -> None:
        from daemon.evidence import EvidenceStore, NoEvidence

        e = self.cfg.evidence
        self.evidence = NoEvidence()
        if not e.enabled:
            return
        try:
            self.evidence = EvidenceStore(e).start()
        except OSError as exc:   # evidence is for looking at; the readings matter more
            log.error("evidence store %s not started: %s", e.dir, exc)

    def _start_web(self) -> None:
        """The local page (daemon/web/page.py); self.live is what the loop hands frames and readings to."""
        from daemon.web.page import Page

        self.page = Page.start(lambda: self.cfg, self.snapshot, lambda: self.evidence)
        self.live = self.page.live if self.page is not None else None

    def _stop_web(self) -> None:
        if self.page is not None:
            self.page.stop()

    def _start_publisher(self) -> None:
        """Every configured sink (daemon/publish/sinks), MQTT first; each returns at once and connects by itself."""
        from daemon.publish.sinks import build_sinks

        if not self.cfg.mqtt.enabled:
            log.info("mqtt.enabled is false: results stay in the outbox %s", self.cfg.outbox.path)
        self.sinks = build_sinks(self.cfg, self.outbox)
        mqtt = self.sinks.get("mqtt")
        self.publisher = mqtt.publisher if mqtt is not None else None
        for sink in self.sinks.values():
            sink.start()

    def _stop_sinks(self, drain_timeout_s: float) -> dict:
        """Stops every sink at once (each drains its own rows for at most drain_timeout_s); name -> rows left."""
        from daemon.publish.sinks import stop_sinks

        left = stop_sinks(self.sinks, drain_timeout_s)
        self.sinks = {}
        self.publisher = None
        return left

    def _start_camera(self, cam: CameraConfig) -> None:
        src = make_source(cam, self.hub)
        self.sources[cam.name] = src
        self._set_filter(cam)
        with self._stats_lock:
            self._cam_stats.setdefault(cam.name, _CameraStats())
        src.start()

    def _set_filter(self, cam: CameraConfig) -> None:
        self.filters[cam.name] = ResultFilter(FilterRules.from_camera(cam))
        self.trackers.pop(cam.name, None)   # flushed by the caller (reload) before it is replaced
        if publish_mode(cam) == "consensus":
            self.trackers[cam.name] = LabelTracker(cam.leave_after_frames, cam.leave_after_s, cam.max_wait_s)

    def _stop_camera(self, name: str) -> None:
        src = self.sources.pop(name)
        src.stop()
        with self._stats_lock:
            for k in ("corrupt", "too_large", "not_regular", "reconnects", "watchdog_restarts"):
                self._retired[(name, k)] += getattr(src.counters, k)
        pending = self.hub.discard(name)
        if pending is not None:
            pending.ack.release()

    def close(self) -> None:
        """Frees what start() got, for a start that failed half-way."""
        for name in list(self.sources):
            self._stop_camera(name)
        self._stop_sinks(0.0)
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self._stop_web()
        if self.evidence is not None:
            self.evidence.stop()
        if self.pipeline is not None:
            self.pipeline.close()
        if self.outbox is not None:
            self.outbox.close()

    def _on_stop_signal(self, signum, frame) -> None:
        self._stop.set()

    def _on_hup(self, signum, frame) -> None:
        self._reload = True

    # ------------------------------------------------------------ the work loop

    def run(self) -> int:
        wd_interval = watchdog_interval_s()
        ping_every_s = wd_interval / 2.0 if wd_interval else None
        last_ping = last_status = last_stats = time.monotonic()
        try:
            while not self._stop.is_set():
                # With a batch in flight on the GPU, only frames already waiting are taken: the one in
                # flight is finished at once otherwise, so overlap never adds latency to an idle camera.
                first_wait_s = 0.0 if self._in_flight else FIRST_FRAME_WAIT_S
                frames = self.hub.take(self.pipeline.det_batch, first_wait_s, self.cfg.gpu.batch_wait_ms / 1000.0)
                if frames and self.pipeline.overlaps:
                    started = self._submit(frames)     # batch N+1 uploads and pre-processes on the GPU ...
                    self._finish_in_flight()           # ... while batch N is post-processed and recognized
                    self._in_flight = started
                elif frames:
                    self._process(frames)
                else:
                    self._finish_in_flight()
                self._publish_due(time.time())
                now = time.monotonic()
                for src in list(self.sources.values()):
                    src.check_watchdog()
                if ping_every_s and now - last_ping >= ping_every_s and self._watchdog_ok(now):
                    self.notifier.watchdog()
                    last_ping = now
                if now - last_status >= STATUS_PERIOD_S:
                    self.notifier.status(self._status_line())
                    last_status = now
                interval = self.cfg.mqtt.stats_interval_s
                if self.publisher is not None and interval > 0 and now - last_stats >= interval:
                    last_stats = now
                    try:
                        self.publisher.publish_stats(self.snapshot())
                    except Exception:   # stats are a courtesy; never worth the readings
                        log.exception("stats not published")
                if self._reload:
                    self._reload = False
                    self.reload()
        finally:
            code = self._shutdown()
        return code

    def _process(self, frames: list[Frame]) -> None:
        started = self._submit(frames)
        if started is not None:
            self._finish(started)

    def _submit(self, frames: list[Frame]) -> Optional[tuple[list[Frame], Submitted]]:
        try:
            return frames, self.pipeline.submit([f.image for f in frames])
        except Exception:
            self._ocr_failed(frames)
            return None

    def _finish(self, in_flight: tuple[list[Frame], Submitted]) -> None:
        frames, submitted = in_flight
        try:
            results = self.pipeline.finish([submitted])
        except Exception:
            self._ocr_failed(frames)
            return
        for frame, result in zip(frames, results):
            try:
                self._handle(frame, result)
            except Exception as exc:   # one poison frame must not stop the daemon, nor every restart after it
                log.exception("%s: a frame could not be recorded", frame.camera)
                frame.ack.reject(f"its reading could not be recorded ({type(exc).__name__})")
        self._last_progress = time.monotonic()

    def _finish_in_flight(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            self._finish(in_flight)

    def _ocr_failed(self, frames: list[Frame]) -> None:
        # Not progress: if it keeps failing, the systemd watchdog restarts the daemon.
        log.exception("OCR failed on a batch of %d frame(s)", len(frames))
        for f in frames:
            f.ack.release()

    def _handle(self, frame: Frame, result) -> None:
        tracker = self.trackers.get(frame.camera)
        if tracker is not None and frame.camera in self.filters:
            self._observe(frame, result, tracker)
            return
        # The frame carries its acknowledgement (a no-op for live cameras): reserve(seq), then done() once
        # the reading is durable (or needs none), release() when it is not stored. Never the source by name.
        cam, ack = frame.camera, frame.ack
        filt = self.filters.get(cam)
        if filt is None:   # the camera was removed by a reload while its frame was in flight
            ack.release()
            return
        codes, codes_ms = self._read_codes(cam, frame.image)
        decision = filt.decide(result.lines, frame.captured_at, codes)   # recorded by commit once stored
        st = self._record_frame(cam, result, codes_ms)
        with self._stats_lock:
            st.rejected.update(decision.rejected)
            st.noted.update(decision.noted)
        if self.live is not None:   # references only: the page draws when it asks
            self.live.frame(cam, frame.image, frame.captured_at, result.lines, decision.lines, codes)
            self.live.rejected(cam, frame.captured_at, decision.rejected, result.lines, decision.lines)
        if not decision.publish:
            ack.done()
            return
        seq = frame.seq if frame.seq is not None else self.outbox.next_seq(cam)
        ack.reserve(seq)   # folder: seq is recorded with the file, so a re-run after a crash keeps the id
        self._store(cam, filt, decision, seq, ack, _FrameContext.of(frame, result, codes_ms))

    def _record_frame(self, cam: str, result, codes_ms: Optional[float]) -> "_CameraStats":
        """One OCR'd frame in the camera's stats and the stage latencies (stats and metrics alike)."""
        stages = dict(result.timing_ms)
        if codes_ms is not None:
            stages["codes"] = codes_ms
        with self._stats_lock:
            st = self._cam_stats.setdefault(cam, _CameraStats())
            st.frames += 1
            st.recent.append(time.monotonic())
            for stage, ms in stages.items():
                self._latency.setdefault(stage, deque(maxlen=LATENCY_WINDOW)).append(ms)
        for stage, ms in stages.items():
            self.metrics.observe_ms(stage, ms)
        return st

    def _observe(self, frame: Frame, result, tracker: LabelTracker) -> None:
        """A frame of a consensus camera: its lines and codes join the labels in view; the labels it finishes
        go through the filter and to the outbox. Never a folder frame (config refuses it): nothing to ack."""
        cam = frame.camera
        codes, codes_ms = self._read_codes(cam, frame.image)
        self._record_frame(cam, result, codes_ms)
        if self.live is not None:   # lines still being voted on
            self.live.frame(cam, frame.image, frame.captured_at, result.lines, None, codes)
        finished = tracker.observe(frame.captured_at, result.lines, codes, _FrameContext.of(frame, result, codes_ms),
                                   image=frame.image)   # its label outlines group the lines (~1 ms a frame)
        frame.ack.done()
        for label in finished:
            self._publish_label(cam, label)

    def _publish_due(self, now: float) -> None:
        """Labels that left view or waited max_wait_s while their camera sent no frame."""
        for cam, tracker in list(self.trackers.items()):
            for label in tracker.due(now):
                self._publish_label(cam, label)

    def _flush_labels(self, why: str) -> None:
        """Every label still being voted on is published now (SIGTERM's drain, SIGHUP's reload)."""
        for cam, tracker in list(self.trackers.items()):
            labels = tracker.flush()
            if labels:
                log.info("%s: %d label(s) still in view published (%s)", cam, len(labels), why)
            for label in labels:
                self._publish_label(cam, label)

    def _publish_label(self, cam: str, label: FinishedLabel) -> None:
        """A finished label's voted reading through the camera's filter (codes of any of its frames confirm it),
        stored with frames; captured_at is its first frame's, latency and source its best frame's."""
        filt = self.filters.get(cam)
        if filt is None:
            return
        first, best = label.first_context, label.best_context
        decision = filt.decide(label.lines, first.captured_at, label.codes)
        with self._stats_lock:
            st = self._cam_stats.setdefault(cam, _CameraStats())
            st.rejected.update(decision.rejected)
            st.noted.update(decision.noted)
        if self.live is not None:
            self.live.rejected(cam, first.captured_at, decision.rejected, label.lines, decision.lines)
        if decision.publish:
            self._store(cam, filt, decision, self.outbox.next_seq(cam), NO_ACK, best, first.captured_at,
                        label.frames)

    def _store(self, cam: str, filt: ResultFilter, decision, seq: int, ack, ctx: "_FrameContext",
               captured_at: Optional[float] = None, frames: Optional[int] = None) -> None:
        from daemon.publish.payload import result_message, result_topic

        captured_at = ctx.captured_at if captured_at is None else captured_at
        latency_ms = dict(ctx.timing_ms)
        if ctx.codes_ms is not None:
            latency_ms["codes"] = ctx.codes_ms
        latency_ms["capture_to_outbox"] = max(0.0, (time.time() - ctx.captured_at) * 1000.0)
        msg_id, payload = result_message(device_id=self.cfg.device_id, camera=cam, seq=seq,
                                         captured_at=captured_at, lines=decision.lines,
                                         latency_ms=latency_ms, engine=self.pipeline.describe(),
                                         source=ctx.source, codes=decision.codes, frames=frames)
        topic = result_topic(self.cfg.mqtt.topic_prefix, self.cfg.device_id, cam)
        stored = self.outbox.put(cam, topic, msg_id, payload)
        if stored:
            with self._stats_lock:
                self._cam_stats.setdefault(cam, _CameraStats()).stored += 1
                self._latency.setdefault("capture_to_outbox", deque(maxlen=LATENCY_WINDOW)).append(
                    latency_ms["capture_to_outbox"])
            self.metrics.observe_ms("capture_to_outbox", latency_ms["capture_to_outbox"])
            filt.commit(decision)   # only a stored reading makes later ones duplicates
            ack.done()              # durable: now the file may go
            self._keep_evidence(cam, msg_id, captured_at, decision.lines, ctx, frames)
            # One line per stored reading (de-duplication, or consensus, keeps it to one per label in view).
            texts = " | ".join(line.text for line in decision.lines)
            log.info("%s #%d stored%s: %s", cam, seq, f" ({frames} frames)" if frames else "",
                     texts if len(texts) <= 160 else texts[:157] + "...")
            for sink in self.sinks.values():
                sink.wake()
        elif getattr(stored, "reason", "") == "too_large":
            ack.reject("its reading is larger than outbox.max_bytes")   # it can never fit: set aside, not retried
        else:
            ack.release()   # refused by the outbox caps (counted there); a folder image is retried later

    def _keep_evidence(self, cam: str, msg_id: str, captured_at: float, lines, ctx: "_FrameContext",
                       frames: Optional[int]) -> None:
        """A stored reading's frame and line boxes to the evidence store (queued, never waited for), the reading
        to the page, and its id to the review topic when a line is below evidence.review_below_confidence."""
        from daemon.evidence import boxes_in_frame
        from daemon.publish.review import needs_review, review_message, review_topic

        if ctx.image is not None:   # a consensus reading's frame is its label's best one: its lines' boxes there
            boxes = [line.box for line in lines] if frames is None else boxes_in_frame(lines, ctx.lines)
            self.evidence.submit(msg_id, ctx.image, boxes)
        below = self.cfg.evidence.review_below_confidence
        review = needs_review(lines, below)
        if review:   # after the reading, through the same outbox: a broker outage loses neither
            payload = review_message(msg_id=msg_id, device_id=self.cfg.device_id, camera=cam,
                                     captured_at=captured_at, lines=lines, below=below)
            if self.outbox.put(cam, review_topic(self.cfg.mqtt.topic_prefix, self.cfg.device_id, cam),
                               f"{msg_id}/review", payload):
                with self._stats_lock:
                    self._cam_stats.setdefault(cam, _CameraStats()).reviewed += 1
        if self.live is not None:
            self.live.reading(cam, msg_id, captured_at, lines, frames, review)

    def _read_codes(self, cam: str, image) -> tuple[list, Optional[float]]:
        """The frame's codes per cameras[].codes (the frame has its ROI applied, like the text) and the ms taken;
        ([], None) when the camera reads none. A reader failure costs the codes of this frame, not its text."""
        from daemon.codes.reader import reader_for
        formats = next((tuple(c.codes) for c in self.cfg.cameras if c.name == cam), ())
        if not formats:
            return [], None
        t0 = time.perf_counter()
        try:
            codes = reader_for(formats).read(image)
        except Exception:
            log.exception("%s: reading codes failed", cam)
            codes = []
        return codes, (time.perf_counter() - t0) * 1000.0

    # ------------------------------------------------------------ health, status, stats

    def progressing(self, now: Optional[float] = None) -> bool:
        now = time.monotonic() if now is None else now
        stall_s = self.cfg.service.stall_timeout_s
        if now - self._last_progress < stall_s:
            return True
        wall = time.time()
        healths = [s.health() for s in list(self.sources.values())]
        return bool(healths) and all(h.state == "idle" and wall - h.heartbeat_at < stall_s for h in healths)

    def delivery_facts(self) -> Optional[DeliveryFacts]:
        """The publisher's DeliveryHealth; with MQTT off the outbox's own health; None before start()."""
        if self.publisher is not None:
            return self.publisher.delivery_health()
        if self.outbox is not None:
            return _OutboxOnly.of(self.outbox.health())
        return None

    def verdict(self, now: Optional[float] = None,
                facts: Optional[DeliveryFacts] = None) -> Verdict:
        """Healthy? Keep pinging systemd? From the facts of this moment (daemon/health.py decides)."""
        now = time.monotonic() if now is None else now
        facts = self.delivery_facts() if facts is None else facts
        pub = self.publisher
        rows = self.outbox.depth("mqtt" if pub is not None else None)[0] if self.outbox is not None else 0
        with self._delivery_lock:
            if pub is not None:
                self._delivery_clock = observe(self._delivery_clock, now, connected=bool(pub.connected),
                                               acked=pub.counters.acked, rows=rows)
            still_s = now - self._delivery_clock.moved_at
        svc = self.cfg.service
        return assess(frames_progressing=self.progressing(now), stall_timeout_s=svc.stall_timeout_s,
                      mqtt_enabled=pub is not None, delivery=facts, rows=rows, delivery_still_s=still_s,
                      max_undelivered_age_s=svc.max_undelivered_age_s,
                      sinks=[s.health() for n, s in list(self.sinks.items()) if n != "mqtt"])

    def _watchdog_ok(self, now: float) -> bool:
        verdict = self.verdict(now)
        if not verdict.watchdog_ok and verdict.reasons != self._watchdog_withheld:
            # Once per change: the journal says why systemd is about to restart us.
            log.error("not pinging the systemd watchdog: %s", "; ".join(verdict.reasons))
        self._watchdog_withheld = () if verdict.watchdog_ok else verdict.reasons
        return verdict.watchdog_ok

    def health(self) -> tuple[bool, dict]:
        cams = {name: src.health().state for name, src in list(self.sources.items())}
        pub = self.publisher
        facts = self.delivery_facts()
        verdict = self.verdict(facts=facts)
        detail = {
            "cameras": cams,
            "last_frame_age_s": round(time.monotonic() - self._last_progress, 1),
            "broker_connected": bool(pub and pub.connected),
            "outbox_rows": self.outbox.depth()[0] if self.outbox is not None else 0,
            "reasons": list(verdict.reasons),   # empty when healthy
            "watchdog_ok": verdict.watchdog_ok,
            "delivery": _facts_dict(facts),
        }
        sinks = self._sinks_health()
        if sinks:   # every output: up or down, what it still owes
            detail["sinks"] = sinks
            detail["sinks_down"] = [n for n, h in sinks.items() if not h["up"]]
        # Running on the CPU by fallback is healthy (readings flow) but degraded: not what the box is for.
        backend = self.backend_info()
        detail["degraded"] = backend["degraded"]
        detail["backend"] = backend
        return verdict.healthy, detail

    def _sinks_health(self) -> dict:
        """name -> SinkHealth.as_dict() with the sink's counters (delivered, failed, dead_lettered, ...)."""
        return {n: {**s.health().as_dict(), **s.counters.as_dict()} for n, s in list(self.sinks.items())}

    def backend_info(self) -> dict:
        """Which backend runs, at which precision and why (BackendChoice.as_dict) for /healthz and stats."""
        pipeline = self.pipeline
        choice = pipeline.choice if pipeline is not None else None
        if choice is not None:
            return choice.as_dict()
        engine = pipeline.describe() if pipeline is not None else {}
        return {"backend": engine.get("backend", "none"), "precision": engine.get("precision", ""),
                "reason": "configured", "category": "configured", "degraded": False}

    def snapshot(self) -> dict:
        now = time.monotonic()
        cams = {}
        with self._stats_lock:
            for name, st in self._cam_stats.items():
                src = self.sources.get(name)
                c = src.counters if src is not None else None
                cams[name] = {
                    "fps": round(st.fps(now), 2),
                    "frames": st.frames,
                    "dropped": self.hub.dropped.get(name, 0),
                    "corrupt": self._retired[(name, "corrupt")] + (c.corrupt if c else 0),
                    "too_large": self._retired[(name, "too_large")] + (c.too_large if c else 0),
                    "not_regular": self._retired[(name, "not_regular")] + (c.not_regular if c else 0),
                    "reconnects": self._retired[(name, "reconnects")] + (c.reconnects if c else 0),
                    "watchdog_restarts": self._retired[(name, "watchdog_restarts")] + (c.watchdog_restarts if c else 0),
                    "stored": st.stored,
                    "reviewed": st.reviewed,
                    "rejected": dict(st.rejected),
                    "checks": dict(st.noted),
                    "state": src.health().state if src is not None else "removed",
                }
            latency = {stage: {"p50": round(percentile(list(v), 50), 2), "p95": round(percentile(list(v), 95), 2),
                               "count": len(v)} for stage, v in self._latency.items()}
        outbox = {"rows": 0, "bytes": 0}
        if self.outbox is not None:
            rows, nbytes = self.outbox.depth()
            oc = self.outbox.counters
            outbox = {"rows": rows, "bytes": nbytes,   # and every OutboxCounters field (losses, dead letters)
                      **{f.name: getattr(oc, f.name) for f in dataclasses.fields(oc) if not f.name.startswith("_")}}
        mqtt: dict = {"enabled": self.publisher is not None, "connected": False}
        if self.publisher is not None:
            mqtt["connected"] = bool(self.publisher.connected)
            c = self.publisher.counters
            mqtt.update({f.name: getattr(c, f.name) for f in dataclasses.fields(c) if not f.name.startswith("_")})
        facts = self.delivery_facts()
        verdict = self.verdict(facts=facts)
        return {"device": self.cfg.device_id, "uptime_s": round(now - self._started_at, 1),
                "backend": self.backend_info(), "cameras": cams, "outbox": outbox, "mqtt": mqtt,
                "delivery": _facts_dict(facts),
                "sinks": self._sinks_health(),
                "evidence": self.evidence.snapshot() if self.evidence is not None else {"enabled": False},
                "health": {"healthy": verdict.healthy, "watchdog_ok": verdict.watchdog_ok,
                           "reasons": list(verdict.reasons)},
                "latency_ms": latency}

    def _status_line(self) -> str:
        snap = self.snapshot()
        fps = sum(c["fps"] for c in snap["cameras"].values())
        up = sum(1 for c in snap["cameras"].values() if c["state"] in ("streaming", "idle"))
        broker = ("connected" if snap["mqtt"]["connected"] else "disconnected") if snap["mqtt"]["enabled"] else "off"
        line = (f"{up}/{len(snap['cameras'])} cameras up, {fps:.1f} fps, outbox {snap['outbox']['rows']} rows, "
                f"broker {broker}")
        down = [f"{n} ({s['backlog']} waiting)" for n, s in snap.get("sinks", {}).items() if n != "mqtt" and not s["up"]]
        if down:   # the MQTT sink is the broker above
            line += f"; down: {', '.join(down)}"
        reasons = snap["health"]["reasons"]
        return line + (f"; UNHEALTHY: {'; '.join(reasons)}" if reasons else "")

    # ------------------------------------------------------------ SIGHUP

    def reload(self) -> bool:
        """Applies the config file again; False (and the old config kept) when it is invalid or unusable."""
        from daemon.ocr.pipeline import OcrPipeline
        from daemon.publish.outbox import Outbox
        from daemon.publish.sinks import sink_names

        try:
            new = config_mod.load(self.config_path)
        except ConfigError as exc:
            log.error("SIGHUP: config %s rejected, the running one stays: %s", self.config_path, exc)
            self.notifier.status(f"config reload rejected: {exc}")
            return False
        old = self.cfg
        if new == old:
            log.info("SIGHUP: config unchanged")
            return True
        self._finish_in_flight()   # its frames belong to the running models, outbox and filters
        self._flush_labels("reload")   # so do the labels being voted on: published with the running config
        # RELOADING=1 ... READY=1 brackets the reload for systemd; MONOTONIC_USEC is what systemd 253+ expects.
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        # First everything that can fail, with the running parts untouched: new models, a new outbox file.
        pipeline = outbox = None
        try:
            if any(getattr(new, k) != getattr(old, k) for k in ("backend", "ocr", "engines", "gpu")):
                pipeline = OcrPipeline.from_config(new)
            if new.outbox != old.outbox or sink_names(new) != sink_names(old):
                outbox = Outbox(new.outbox, sinks=sink_names(new))   # the sinks rows are owed to are set at open
        except Exception as exc:
            for part in (pipeline, outbox):
                if part is not None:
                    part.close()
            log.error("SIGHUP: the new config cannot be applied (%s); the running one stays", exc)
            self.notifier.send("READY=1", f"STATUS=config reload rejected: {exc}")
            return False
        if pipeline is not None:
            self.pipeline.close()
            self.pipeline = pipeline
            log.info("SIGHUP: OCR models reloaded (%s: %s)", pipeline.describe(), self.backend_info()["reason"])
        publish_changed = (outbox is not None or any(getattr(new, k) != getattr(old, k) for k in (
            "mqtt", "device_id", "opcua", "sparkplug", "homeassistant")))
        if publish_changed:
            self._stop_sinks(0.0)   # unsent rows stay in the outbox for the new sinks
        if outbox is not None:
            self.outbox.close()
            self.outbox = outbox
        old_cams = {c.name: c for c in old.cameras}
        new_cams = {c.name: c for c in new.cameras}
        self.cfg = new
        if publish_changed:
            self._start_publisher()
        for name, cam in old_cams.items():
            if name not in new_cams or _source_part(new_cams[name]) != _source_part(cam):
                self._stop_camera(name)
                self.filters.pop(name, None)
                self.trackers.pop(name, None)
                if self.live is not None:
                    self.live.forget(name)   # the page shows the new source's frames, not the old one's
        for name, cam in new_cams.items():
            if name not in self.sources:
                self._start_camera(cam)
            elif cam != old_cams[name]:
                self._set_filter(cam)
        if new.metrics != old.metrics:
            if self.metrics_server is not None:
                self.metrics_server.stop()
                self.metrics_server = None
            self._start_metrics_server()
        if new.evidence != old.evidence:
            self.evidence.stop()   # writes what is queued with the old settings
            self._start_evidence()
        if new.web != old.web:
            self._stop_web()       # a new LiveView: recent_readings may have changed
            self._start_web()
        if new.service.log_level != old.service.log_level:
            logging.getLogger().setLevel(new.service.log_level)
        log.info("SIGHUP: config %s applied", self.config_path)
        self.notifier.send("READY=1", f"STATUS=config reloaded; {self._status_line()}")
        return True

    # ------------------------------------------------------------ SIGTERM

    def _shutdown(self) -> int:
        deadline = time.monotonic() + self.cfg.service.drain_timeout_s
        self.notifier.stopping("draining")
        log.info("stopping: draining for at most %.1f s", self.cfg.service.drain_timeout_s)
        sources = dict(self.sources)
        for src in sources.values():
            src.stop(join_timeout_s=0.5)
        # The frames already handed over are OCR'd and stored while time allows.
        self._finish_in_flight()
        while time.monotonic() < deadline:
            frames = self.hub.take(self.pipeline.det_batch, 0.0, 0.0)
            if not frames:
                break
            self._process(frames)
        self._flush_labels("stopping")   # before the publisher's drain, so they are sent with the rest
        for name in list(sources):
            pending = self.hub.discard(name)
            if pending is not None:
                pending.ack.release()   # a folder image stays on disk for the next start
        self.sources.clear()
        left_by_sink = self._stop_sinks(max(0.0, deadline - time.monotonic()))
        left = self.outbox.depth()[0]
        if len(left_by_sink) > 1:
            log.info("stopped the sinks; results each still owes: %s",
                     ", ".join(f"{n} {k}" for n, k in left_by_sink.items()))
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self._stop_web()
        self.evidence.stop()   # the readings stored in the drain keep their evidence
        self.pipeline.close()
        if self.outbox.close():
            log.info("stopped: %d result(s) left in the outbox %s for the next start", left, self.cfg.outbox.path)
        else:   # its file was deleted and could not be written anew (the outbox logged why)
            log.error("stopped: %d result(s) NOT kept: the outbox file %s is gone", left, self.cfg.outbox.path)
        return 0


@dataclasses.dataclass(frozen=True)
class _FrameContext:
    """What a stored reading needs of its frame: capture time, stage timings, the codes' ms, the source, and the
    image itself for the evidence store (a reference; a consensus label keeps its first and best frames')."""
    captured_at: float
    timing_ms: dict
    codes_ms: Optional[float]
    source: dict
    image: object = dataclasses.field(default=None, compare=False, repr=False)   # the frame, for its evidence
    lines: tuple = dataclasses.field(default=(), compare=False, repr=False)      # what OCR read on that frame

    @classmethod
    def of(cls, frame: Frame, result, codes_ms: Optional[float]) -> "_FrameContext":
        return cls(frame.captured_at, dict(result.timing_ms), codes_ms, frame.source, frame.image,
                   tuple(result.lines))


def _facts_dict(facts: Optional[DeliveryFacts]) -> Optional[dict]:
    """The delivery report for /healthz, stats and metrics (JSON-ready); None when there is none."""
    if facts is None:
        return None
    d = dataclasses.asdict(facts)
    d["needs_restart"] = bool(facts.needs_restart)
    for key in ("oldest_undelivered_age_s", "sender_idle_s"):
        if d.get(key) is not None:
            d[key] = round(float(d[key]), 1)
    return d


@dataclasses.dataclass(frozen=True)
class _OutboxOnly:
    """DeliveryFacts with MQTT off: the outbox's health, no sender (results stay on disk by design)."""
    outbox_writable: bool
    outbox_responsive: bool
    oldest_undelivered_age_s: Optional[float]
    failing_rows: int
    dead_letters: int
    last_error: str
    sender_alive: bool = True
    network_alive: bool = True
    connected: bool = False
    sender_idle_s: float = 0.0
    outbox_stuck_s: float = 0.0

    @property
    def needs_restart(self) -> bool:
        # No sender to be stuck; an outbox lock that stays held stalls the work loop itself (frames check).
        return False

    @classmethod
    def of(cls, h) -> "_OutboxOnly":
        return cls(outbox_writable=h.writable, outbox_responsive=h.responsive,
                   oldest_undelivered_age_s=h.oldest_undelivered_age_s, failing_rows=h.failing_rows,
                   dead_letters=h.dead_letters, last_error=h.last_error)
