"""`ocr-daemon run`: the long-running service. Cameras -> OCR -> lanes -> recorder -> outbox -> sinks, under systemd.

Threads: one capture thread per camera (daemon/sources) hands frames to a FrameHub; this module's work loop runs in
the main thread and is the only one that touches the OCR backend (TensorRT's CUDA context belongs to one thread):
it takes the frames of every camera that is ready, up to the detector's fixed batch, waiting at most
gpu.batch_wait_ms for stragglers, and runs them as one batch. Each camera's Lane (daemon/readings) turns its frames
into Readings (codes, filter, first, consensus or read-cycle grouping); the one Recorder stores them, durable on
return, then wakes the sinks. An idle triggered camera's frames are not OCR'd. Signal handlers only set flags.

Signals: SIGTERM (and SIGINT) stop the cameras, OCR the frames already handed over, record the labels and read
cycles still open, let the sinks drain the outbox for at most service.drain_timeout_s, then exit 0 with the rest
on disk for the next start. SIGHUP re-reads the config file; a bad one is logged and rejected (the old one keeps
running); a good, changed one first loads what can fail (models, an outbox file), then records what is open in the
cameras it restarts or renews with the running config, then restarts only what changed (daemon/reload_plan.py).
Counters, the snapshot, health and the watchdog: daemon/status.py.
"""
from __future__ import annotations

import dataclasses
import faulthandler
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Optional

from daemon import config as config_mod
from daemon.config import CameraConfig, Config, ConfigError
from daemon.instance_lock import InstanceLock
from daemon.publish.unstored import UnstoredReadings
from daemon.readings import Lane, Recorder, close_boards, make_lane, refresh_boards, tell_boards, wanted_frames
from daemon.readings.look_pool import LookPool
from daemon.readings.trigger_commands import listen_for_commands, offer_command, select_command
from daemon.reload_plan import reload_plan
from daemon.sd_notify import Notifier, watchdog_interval_s
from daemon.sources import CaptureSource, Frame, FrameHub, make_source
from daemon.status import Counters, Heartbeat, Status, status_line
from daemon.web.live import NoLive

if TYPE_CHECKING:   # the pipeline (OpenCV, ONNX Runtime) loads in start(), not when the CLI parses
    from daemon.ocr.pipeline import Submitted

log = logging.getLogger("daemon.service")

FIRST_FRAME_WAIT_S = 0.25   # the loop wakes at least this often for watchdogs, signals and stats
CONFIG_SETTLE_S = 0.5       # a config file changed this recently may still be being written: a reload waits ...
CONFIG_SETTLE_MAX_S = 5.0   # ... at most this long for it to rest


def wait_until_settled(path: str, clock=time.time, sleep=time.sleep) -> None:
    """Returns once the file has not changed for CONFIG_SETTLE_S (or after CONFIG_SETTLE_MAX_S): a SIGHUP sent while
    an editor still writes the file (truncated, then written) must not apply half of it."""
    waited = 0.0
    while waited < CONFIG_SETTLE_MAX_S:
        try:
            age = clock() - os.stat(path).st_mtime
        except OSError:
            return   # load() says what is wrong with it
        if age >= CONFIG_SETTLE_S:
            return
        step = min(max(CONFIG_SETTLE_S - age, 0.05), CONFIG_SETTLE_MAX_S - waited)
        sleep(step)
        waited += step


def add_arguments(parser) -> None:
    parser.add_argument("--config", default="config.yaml", metavar="FILE",
                        help="config file (default: ./config.yaml); SIGHUP re-reads it")


# A SIGHUP before start() installs the daemon's handler (a deploy script's, in the first second) would end the
# process with signal 129, which systemd counts as a clean exit and does not restart: held here, applied after.
_SIGHUP_BEFORE_START = threading.Event()


def main(args) -> int:
    # The systemd watchdog kills with SIGABRT: every thread's Python stack goes to stderr (the journal) first, so the
    # journal says where the daemon hung. A crash in native code (SIGSEGV in a driver) shows the same.
    try:
        faulthandler.enable(all_threads=True)
    except (RuntimeError, ValueError, OSError):   # no usable stderr (closed, not a file): only the dump is lost
        pass
    signal.signal(signal.SIGHUP, lambda signum, frame: _SIGHUP_BEFORE_START.set())
    cfg = config_mod.load(args.config)   # a ConfigError: cli.main's one line, exit 2
    if getattr(args, "log_level", None) is None:
        logging.getLogger().setLevel(cfg.service.log_level)
    log.info("starting with %s: loading the models", cfg.source_path or args.config)   # SIGHUP is held from here
    service = Service(cfg, args.config)
    try:
        service.start()
    except ConfigError:
        service.close()   # what start() opened; then cli.main's one line, exit 2
        raise
    except Exception as exc:
        log.error("cannot start: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        service.close()
        return 1
    return service.run()


class Service:
    """Wires the parts and runs the work loop: cameras -> OCR -> lanes -> recorder; sinks deliver from the outbox.

    The work loop runs in the thread that calls run(); it alone touches the OCR backend, the lanes and the
    recorder. request_stop() and request_reload() (the signal handlers, or a test) only set flags it reads."""

    def __init__(self, cfg: Config, config_path: str, notifier: Optional[Notifier] = None):
        self.cfg = cfg
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.hub = FrameHub()
        self.sources: dict[str, CaptureSource] = {}
        self.lanes: dict[str, Lane] = {}
        self.boards: dict = {}    # triggered cameras' trigger boards (daemon/readings/triggers.py), kept by a reload
        self.pipeline = None
        self.outbox = None
        self.lock: Optional[InstanceLock] = None   # one daemon per outbox (daemon/instance_lock.py)
        self.recorder: Optional[Recorder] = None
        self.publisher = None     # the MQTT sink's publisher (stats topic, delivery clock); None with MQTT off
        self.sinks: dict = {}     # every output, MQTT included (daemon/publish/sinks)
        self.metrics = None
        self.metrics_server = None
        self._metrics_retry_at = 0.0   # monotonic time of the next try at a metrics port that was taken
        self._metrics_old_address = None   # (host, port) still served after a reload moved metrics to a taken port
        self._secret_digests = config_mod.secret_digests(cfg)   # what a reload compares: a rotated token applies
        self.page = None          # the local page (daemon/web/page.py); None with web off
        self.live = NoLive()      # the page's view of each camera (daemon/web/live.py)
        self.evidence = None      # the evidence store (daemon/evidence.py), or NoEvidence with it off
        self.counters = Counters()
        self.looks = LookPool()   # each frame's codes and label outlines, found beside its OCR from submit on
        # Refused readings, lost only once nothing offers them again (the outbox's counters looked up then).
        self._unstored = UnstoredReadings(lambda: self.outbox.counters)
        self.status = Status(self, self.counters)
        self.snapshot = self.status.snapshot   # what metrics, the stats topic and the page read
        self.health = self.status.health       # /healthz
        self._stop = threading.Event()
        self._reload = False
        self.started_at = time.monotonic()
        self.last_progress = time.monotonic()
        # A detector batch submitted to the GPU and not finished yet (only when the pipeline overlaps).
        self._in_flight: Optional[tuple[list[Frame], Submitted]] = None

    def request_stop(self) -> None:
        """SIGTERM's and SIGINT's effect: the loop stops after the batch in hand and drains."""
        self._stop.set()

    def request_reload(self) -> None:
        """SIGHUP's effect: the loop re-reads the config file between batches."""
        self._reload = True

    # ------------------------------------------------------------ start and stop

    def start(self) -> None:
        from daemon.metrics import Metrics
        from daemon.ocr.pipeline import OcrPipeline
        from daemon.publish.outbox import Outbox
        from daemon.publish.sinks import sink_names

        cfg = self.cfg
        # First: a SIGTERM while the models load or the sinks already replay the outbox (systemd stopping a
        # unit that is still starting) is a clean stop once run() begins, not the default kill.
        signal.signal(signal.SIGTERM, lambda signum, frame: self.request_stop())
        signal.signal(signal.SIGINT, lambda signum, frame: self.request_stop())
        signal.signal(signal.SIGHUP, lambda signum, frame: self.request_reload())
        if _SIGHUP_BEFORE_START.is_set():   # the file may have changed since it was read
            self.request_reload()
        self.notifier.status("loading models")
        self.lock = InstanceLock(cfg.outbox.path)
        self.lock.acquire()   # AlreadyRunning: main's "cannot start", exit 1, before any port or broker is touched
        self.outbox = Outbox(cfg.outbox, sinks=sink_names(cfg))
        refresh_boards(cfg, self.boards)
        self.pipeline = OcrPipeline.from_config(cfg)   # the slow part: models load once, here
        self.metrics = Metrics(self.snapshot)
        self.counters.observe_ms = self.metrics.observe_ms
        self._start_metrics_server()
        self._start_evidence()
        self._start_web()
        self.start_sinks()
        self._new_recorder()
        for cam in cfg.cameras:
            self._start_camera(cam)
        self.last_progress = time.monotonic()   # a grace period of stall_timeout_s for cameras to come up
        engine = self.pipeline.describe()
        backend = self.status.backend_info()
        log.info("running: %d camera(s), backend %s (%s), mqtt %s", len(cfg.cameras), engine, backend["reason"],
                 f"{cfg.mqtt.host}:{cfg.mqtt.port}" if cfg.mqtt.enabled else "disabled (outbox only)")
        self.notifier.ready(f"running {len(cfg.cameras)} camera(s) on {engine.get('backend', '?')}"
                            + (" (CPU fallback, see /healthz)" if backend["degraded"] else ""))

    def _new_recorder(self) -> None:
        """The recorder for the current config and outbox (start, and a reload that changed either)."""
        self.recorder = Recorder(self.cfg, self.outbox, self.counters, self._unstored,
                                 engine=lambda: self.pipeline.describe(),
                                 evidence=lambda: self.evidence, page=lambda: self.live, wake=self._wake_sinks)

    def _wake_sinks(self) -> None:
        for sink in self.sinks.values():
            sink.wake()

    def _start_metrics_server(self) -> None:
        from daemon.metrics import start_metrics_server

        self.metrics_server = start_metrics_server(self.cfg.metrics, self.metrics, self.health)

    def _retry_metrics_server(self, now: float) -> None:
        """/healthz is what a supervisor watches: a metrics port that was taken at start (or at a reload that moved
        it, while the old one still serves) is tried again."""
        from daemon.metrics import METRICS_RETRY_S, start_metrics_server

        moving = self._metrics_old_address is not None
        if (self.metrics_server is not None and not moving) or not self.cfg.metrics.enabled \
                or now < self._metrics_retry_at:
            return
        self._metrics_retry_at = now + METRICS_RETRY_S
        server = start_metrics_server(self.cfg.metrics, self.metrics, self.health, retry=True)
        if server is not None:
            if self.metrics_server is not None:
                self.metrics_server.stop()   # the old address, kept while the new one was taken
            self.metrics_server, self._metrics_old_address = server, None

    def _move_metrics_server(self, old: Config) -> None:
        """A reload's metrics settings. Onto another port the new server starts first: if that port is taken the
        old one keeps serving /healthz (a supervisor must not go blind) until the new one can be had."""
        from daemon.metrics import start_metrics_server

        running, self._metrics_old_address = self.metrics_server, None
        new = self.cfg.metrics
        if running is not None and new.enabled and new.port not in (0, old.metrics.port):
            server = start_metrics_server(new, self.metrics, self.health)
            if server is None:
                self._metrics_old_address = (old.metrics.host, old.metrics.port)
                log.warning("SIGHUP: /metrics and /healthz stay on %s:%d until %s:%d is free", old.metrics.host,
                            running.port, new.host, new.port)
                return
            running.stop()
            self.metrics_server = server
            return
        if running is not None:
            running.stop()
            self.metrics_server = None
        self._start_metrics_server()

    def _start_evidence(self) -> None:
        from daemon.evidence import start_evidence

        self.evidence = start_evidence(self.cfg.evidence)

    def _start_web(self) -> None:
        """The local page (daemon/web/page.py); self.live is what the recorder hands frames and readings to."""
        from daemon.web.page import Page

        self.page = Page.start(lambda: self.cfg, self.snapshot, lambda: self.evidence,
                               trigger=lambda camera, body: offer_command(self.boards, camera, body, "http"),
                               recipe=lambda camera, body: select_command(self.boards, camera, body, "http"))
        self.live = self.page.live if self.page is not None else NoLive()

    def _stop_web(self) -> None:
        if self.page is not None:
            self.page.stop()

    def start_sinks(self) -> None:
        """Every configured sink (daemon/publish/sinks), MQTT first; each returns at once and connects by itself."""
        from daemon.publish.sinks import build_sinks

        if not self.cfg.mqtt.enabled:
            log.info("mqtt.enabled is false: results stay in the outbox %s", self.cfg.outbox.path)
        self.sinks = build_sinks(self.cfg, self.outbox, boards=self.boards)
        mqtt = self.sinks.get("mqtt")
        self.publisher = mqtt.publisher if mqtt is not None else None
        if self.publisher is not None:   # read-cycle triggers and recipes over MQTT, answered on .../answer
            listen_for_commands(self.publisher, self.cfg.mqtt.topic_prefix, self.cfg.device_id, self.boards)
        for sink in self.sinks.values():
            sink.start()

    def _tell_sinks_cameras(self, old: Config, new: Config) -> None:
        """Sinks that announce cameras (Sparkplug's births, Home Assistant's discovery) retire a removed one and
        announce an added one, whether or not the reload restarted them."""
        before, after = [c.name for c in old.cameras], [c.name for c in new.cameras]
        if before == after:
            return
        removed = [name for name in before if name not in after]
        for sink in list(self.sinks.values()):
            setter = getattr(sink, "set_cameras", None)
            if setter is not None:
                setter(after, removed)

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
        self.lanes[cam.name] = make_lane(cam, self.boards, self.cfg)
        self.counters.add_camera(cam.name)
        src.start()

    def _stop_camera(self, name: str) -> None:
        src = self.sources.pop(name)
        src.stop()
        self.counters.retire(name, src.counters)
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
        self.looks.close()
        if self.outbox is not None:
            self.outbox.close()
        if self.lock is not None:
            self.lock.release()

    # ------------------------------------------------------------ the work loop

    def run(self) -> int:
        heartbeat = Heartbeat(self.status, self.notifier, watchdog_interval_s())
        try:
            while not self._stop.is_set():
                # With a batch in flight on the GPU, only frames already waiting are taken: the one in
                # flight is finished at once otherwise, so overlap never adds latency to an idle camera.
                first_wait_s = 0.0 if self._in_flight else FIRST_FRAME_WAIT_S
                cycles = frozenset(name for name, lane in self.lanes.items() if lane.in_cycle())
                frames = wanted_frames(self.hub.take(self.pipeline.det_batch, first_wait_s,
                                                     self.cfg.gpu.batch_wait_ms / 1000.0, cycles), self.lanes)
                if frames and self.pipeline.overlaps:
                    started = self._submit(frames)     # batch N+1 uploads and pre-processes on the GPU ...
                    self._finish_in_flight()           # ... while batch N is post-processed and recognized
                    self._in_flight = started
                elif frames:
                    self._process(frames)
                else:
                    self._finish_in_flight()
                self._record_due(time.time())
                for src in list(self.sources.values()):
                    src.check_watchdog()
                tell_boards(self.boards, self.sources)
                now = time.monotonic()
                self.lock.keep(now)   # the state folder removed by hand: lock the outbox again
                self._retry_metrics_server(now)
                if self.page is not None:
                    self.page.retry(now)   # a page port that was taken at start
                heartbeat.tick(now, self.publisher, self.cfg.mqtt.stats_interval_s)
                if self._reload:
                    self._reload = False
                    began = time.monotonic()
                    with heartbeat.pinging_meanwhile():   # this loop sends the pings, and a reload can be long
                        self.reload()
                    # Frames wait while it runs: its time does not count towards service.stall_timeout_s.
                    self.last_progress = min(time.monotonic(), self.last_progress + (time.monotonic() - began))
        finally:
            code = self._shutdown()
        return code

    def _process(self, frames: list[Frame]) -> None:
        """One batch at a time (a detector that does not overlap): the tracker has voted on every frame before these,
        so a frame left unread (text_settle) is known before detection and skips the detector too, the largest cost
        of the CPU backend."""
        self.looks.start(frames, self.lanes)
        try:
            unread = self._unread(frames)
            read = [frame for frame, skip in zip(frames, unread) if not skip]
            results = iter(self.pipeline.finish([self._detect(read)]) if read else ())
        except Exception:
            self._ocr_failed(frames)
            return
        self._handle_all(frames, [None if skip else next(results) for skip in unread])

    def _submit(self, frames: list[Frame]) -> Optional[tuple[list[Frame], Submitted]]:
        self.looks.start(frames, self.lanes)
        try:
            return frames, self._detect(frames)
        except Exception:
            self._ocr_failed(frames)
            return None

    def _detect(self, frames: list[Frame]) -> Submitted:
        return self.pipeline.submit([f.image for f in frames], [f.detect_image for f in frames])

    def _unread(self, frames: list[Frame]) -> list[bool]:
        """Per frame, whether its voting lane leaves it unread (text_settle): its look says so. Asked once a frame."""
        return [frame.camera in self.lanes and self.looks.unread(self.lanes[frame.camera], frame) for frame in frames]

    def _finish(self, in_flight: tuple[list[Frame], Submitted]) -> None:
        """A batch submitted while the one before it was finished (an overlapping detector): whether a frame is left
        unread is asked only now, with the tracker up to date, so its detection ran but is not post-processed."""
        frames, submitted = in_flight
        try:
            results = self.pipeline.finish([submitted], self._unread(frames))
        except Exception:
            self._ocr_failed(frames)
            return
        self._handle_all(frames, results)

    def _handle_all(self, frames: list[Frame], results: list) -> None:
        for frame, result in zip(frames, results):
            try:
                self._handle(frame, result)
            except Exception as exc:   # one poison frame must not stop the daemon, nor every restart after it
                log.exception("%s: a frame could not be recorded", frame.camera)
                frame.ack.reject(f"its reading could not be recorded ({type(exc).__name__})")
        self.last_progress = time.monotonic()

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
        """One OCR'd frame: its lane reads codes and makes readings, the recorder stores them. The frame carries
        its acknowledgement (a no-op for live cameras); the service never looks a source up by name."""
        lane = self.lanes.get(frame.camera)
        if lane is None:   # the camera was removed by a reload while its frame was in flight
            frame.ack.release()
            return
        look = self.looks.result(lane, frame)     # its codes and label outlines, found beside its OCR
        self.counters.frame(frame.camera, result.timing_ms if result is not None else None, look.codes_ms)
        readings = lane.readings(frame, result, look.codes, look.codes_ms, look.outlines, look.searched)
        kept = None if lane.voting else readings[0].lines   # lines still being voted on have no verdict yet
        # A frame whose codes were left out (codes_settle) would show its labels without them, one left unread
        # (text_settle) without anything.
        if look.searched and result is not None:
            self.live.frame(frame.camera, frame.image, frame.captured_at, result.lines, kept, look.codes)   # refs
        for reading in readings:
            self.recorder.record(lane, reading)

    def _record_due(self, now: float) -> None:
        """Labels that left view or waited max_wait_s while their camera sent no frame."""
        for name, lane in list(self.lanes.items()):
            for reading in lane.due(now, self.hub.captured_at(name)):
                self.recorder.record(lane, reading)
        self._unstored.due(time.monotonic())   # refused readings no frame offered again are losses now

    def _flush_labels(self, why: str, cameras=None, final: bool = False) -> None:
        """Every label still being voted on (of those cameras; None: all) is recorded now (SIGTERM's drain, SIGHUP's
        reload), and a read cycle in progress ends; final (the stop): a trigger still waiting is answered too."""
        for name, lane in list(self.lanes.items()):
            if cameras is not None and name not in cameras:
                continue
            readings = lane.flush(why, final)
            if readings:
                log.info("%s: %d label(s) still in view published (%s)", name, len(readings), why)
            for reading in readings:
                self.recorder.record(lane, reading)

    # ------------------------------------------------------------ SIGHUP

    def reload(self) -> bool:
        """Applies the config file again; False (and the old config kept) when it is invalid or unusable."""
        from daemon.ocr.pipeline import OcrPipeline
        from daemon.publish.outbox import Outbox
        from daemon.publish.sinks import sink_names

        wait_until_settled(self.config_path)
        try:
            new = config_mod.load(self.config_path)
        except ConfigError as exc:
            log.error("SIGHUP: config %s rejected, the running one stays: %s", self.config_path, exc)
            self.notifier.status(f"config reload rejected: {exc}")
            return False
        old = self.cfg
        digests = config_mod.secret_digests(new)
        rotated = {part for part, d in digests.items() if d != self._secret_digests.get(part)}
        if new == old and not rotated:
            log.info("SIGHUP: config unchanged")
            return True
        # RELOADING=1 ... READY=1 brackets the reload for systemd; MONOTONIC_USEC is what systemd 253+ expects.
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        plan = reload_plan(old, new, sink_names)
        if rotated:   # a token or password file rotated: the parts that hold it start again with the new one
            log.info("SIGHUP: new secrets for %s", " and ".join(sorted(rotated)))
            plan = dataclasses.replace(plan, web=plan.web or "web" in rotated, sinks=plan.sinks or "sinks" in rotated)
        # First everything that can fail, with the running parts untouched: new models, a new outbox file.
        pipeline = outbox = lock = None
        try:
            pipeline = OcrPipeline.from_config(new) if plan.pipeline else None
            moved = plan.outbox and new.outbox.path != old.outbox.path
            if moved:
                owed = self.outbox.depth()[0]
                if owed:   # they would stay behind in the old file, delivered by no one
                    raise RuntimeError(f"outbox.path cannot move while {owed} reading(s) are owed in "
                                       f"{old.outbox.path}: let them be delivered, or stop the daemon and move the "
                                       "file by hand")
                lock = InstanceLock(new.outbox.path)   # the new file is nobody else's either
                lock.acquire()
            outbox = Outbox(new.outbox, sinks=sink_names(new)) if plan.outbox else None   # sinks fixed at open
            if moved:
                outbox.carry_seqs(self.outbox.last_seqs())   # seq and result_id go on, never back to 1
        except Exception as exc:
            for part in (pipeline, outbox):
                if part is not None:
                    part.close()
            if lock is not None:
                lock.release()
            log.error("SIGHUP: the new config cannot be applied (%s); the running one stays", exc)
            self.notifier.send("READY=1", f"STATUS=config reload rejected: {exc}")
            return False
        self._finish_in_flight()   # its frames belong to the running models, outbox and filters
        # So do the labels being voted on by the lanes the reload replaces: published with the running config. The
        # other lanes go on (a read cycle in progress on a camera the reload does not touch ends as it would).
        self._flush_labels("a config reload", set(plan.stop_cameras) | set(plan.renew_lanes))
        if pipeline is not None:
            self.pipeline.close()
            self.pipeline = pipeline
            log.info("SIGHUP: OCR models reloaded (%s: %s)", pipeline.describe(), self.status.backend_info()["reason"])
        if plan.sinks:
            self._stop_sinks(0.0)   # unsent rows stay in the outbox for the new sinks
        if outbox is not None:
            self.outbox.close()
            self.outbox = outbox
        if lock is not None:
            self.lock.release()
            self.lock = lock
        self.cfg = new
        refresh_boards(new, self.boards)   # in place: the sinks and the page hold this dict
        if plan.sinks:
            self.start_sinks()
        self._tell_sinks_cameras(old, new)
        self._new_recorder()
        filters = {name: lane.filter for name, lane in self.lanes.items()}   # carried into the new lanes below
        cams = {c.name: c for c in new.cameras}
        for name in plan.stop_cameras:
            self._stop_camera(name)
            self.lanes.pop(name, None)
            # the page shows the new source's frames, not the old one's; a camera still configured keeps its
            # readings and fails there
            self.live.forget(name, history=name not in cams)
        for name in plan.start_cameras:
            self._start_camera(cams[name])
        for name in plan.renew_lanes:
            self.lanes[name] = make_lane(cams[name], self.boards, new)   # its labels were flushed above
        for name, lane in self.lanes.items():
            if name in filters and lane.filter is not filters[name]:
                lane.filter.carry_from(filters[name])
        if plan.metrics:
            self._move_metrics_server(old)
        if plan.evidence:
            self.evidence.stop()   # writes what is queued with the old settings
            self._start_evidence()
        if plan.web:
            self._stop_web()       # a new LiveView: recent_readings may have changed
            self._start_web()
        if plan.log_level:
            logging.getLogger().setLevel(new.service.log_level)
        self._secret_digests = digests
        log.info("SIGHUP: config %s applied", self.config_path)
        self.notifier.send("READY=1", f"STATUS=config reloaded; {status_line(self.snapshot())}")
        return True

    # ------------------------------------------------------------ SIGTERM

    def _shutdown(self) -> int:
        deadline = time.monotonic() + self.cfg.service.drain_timeout_s
        self.notifier.stopping("draining")
        log.info("stopping: draining for at most %.1f s", self.cfg.service.drain_timeout_s)
        close_boards(self.boards, "the daemon is stopping")   # the PLCs see trigger_ready fall now, not at exit
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
        self._flush_labels("stopping", final=True)   # before the publisher's drain, so they are sent with the rest
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
        self.looks.close()
        lost = self._unstored.flush()
        if lost:
            log.warning("stopping: %d reading(s) refused by a full outbox (full_policy refuse_new) or a full or "
                        "failing disk were never stored", lost)
        if self.outbox.close():
            log.info("stopped: %d result(s) left in the outbox %s for the next start", left, self.cfg.outbox.path)
        else:   # its file was deleted and could not be written anew (the outbox logged why)
            log.error("stopped: %d result(s) NOT kept: the outbox file %s is gone", left, self.cfg.outbox.path)
        self.lock.release()
        return 0
