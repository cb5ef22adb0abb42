"""What a SIGHUP must restart, from the old and the new config: pure, so each rule has a test of its own.

The service applies the plan in order: new models and a new outbox first (what can fail, with the running parts
untouched), then the sinks, the cameras (a source restarts only for a change of its own; a filter change only
renews the camera's lane), metrics, evidence, the page and the log level.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from daemon.config import SINKS, CameraConfig, Config
from daemon.config.cameras import grades_print

# Camera fields its lane uses (codes, filter, grouping; a triggered camera's cycle, expectation and print grades):
# a change renews the lane and keeps the source running, so a threshold tuned mid-shift fails no part for want of
# frames while the camera reopens.
LANE_FIELDS = ("min_confidence", "accept_patterns", "accept_formats", "codes", "dedup_window_s", "publish_empty",
               "publish_mode", "leave_after_frames", "leave_after_s", "max_wait_s", "join_dots_px",
               "equalize_detection", "cycle_frames", "cycle_window_ms", "expect_text", "expect_template",
               "expect_regex", "expect_format", "expect_code", "expect_fields", "one_label", "confused_margin",
               "faint_below", "smudged_over", "recipe")


def source_part(cam: CameraConfig) -> CameraConfig:
    """The camera config without its lane fields: a change here needs the source restarted."""
    defaults = CameraConfig()
    return dataclasses.replace(cam, **{f: getattr(defaults, f) for f in LANE_FIELDS})


@dataclass(frozen=True)
class ReloadPlan:
    pipeline: bool                  # backend, ocr, engines or gpu changed: load the models again
    outbox: bool                    # the outbox section or the set of sinks changed: open the outbox anew
    sinks: bool                     # restart every sink (rows unsent stay in the outbox for the new ones)
    stop_cameras: tuple[str, ...]   # removed, or changed in their source part
    start_cameras: tuple[str, ...]  # new, or stopped above and still configured
    renew_lanes: tuple[str, ...]    # running on, with a new lane (filter, codes or grouping changed)
    metrics: bool
    evidence: bool
    web: bool
    log_level: bool


def reload_plan(old: Config, new: Config, sink_names) -> ReloadPlan:
    """sink_names(cfg) -> the sinks rows are owed to (daemon/publish/sinks.sink_names)."""
    def changed(*keys: str) -> bool:
        return any(getattr(new, k) != getattr(old, k) for k in keys)

    outbox = new.outbox != old.outbox or sink_names(new) != sink_names(old)
    old_cams = {c.name: c for c in old.cameras}
    new_cams = {c.name: c for c in new.cameras}
    stop = tuple(n for n, c in old_cams.items() if n not in new_cams or source_part(new_cams[n]) != source_part(c))
    start = tuple(n for n in new_cams if n not in old_cams or n in stop)
    recipes = new.recipes != old.recipes   # a triggered camera's lane holds the recipes it judges by
    renew = tuple(n for n, c in new_cams.items() if n in old_cams and n not in stop
                  and (c != old_cams[n] or (recipes and c.mode == "triggered")))
    triggered = {n for n, c in new_cams.items() if c.mode == "triggered"} != {
        n for n, c in old_cams.items() if c.mode == "triggered"}   # the sinks listen for their triggers
    # The pipeline grades print quality for triggered cameras only.
    pipeline = changed("backend", "ocr", "engines", "gpu") or grades_print(new.cameras) != grades_print(old.cameras)
    return ReloadPlan(pipeline=pipeline, outbox=outbox,
                      sinks=outbox or triggered or changed("device_id", *SINKS),
                      stop_cameras=stop, start_cameras=start, renew_lanes=renew,
                      metrics=changed("metrics"), evidence=changed("evidence"), web=changed("web"),
                      log_level=new.service.log_level != old.service.log_level)
