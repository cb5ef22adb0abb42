"""What a SIGHUP restarts (daemon/reload_plan.py), pure: configs in, a plan out."""
import dataclasses

from daemon import config
from daemon.publish.sinks import sink_names
from daemon.reload_plan import reload_plan


def cfg(**over):
    base = {"device_id": "dock", "mqtt": {"enabled": False},
            "cameras": [{"name": "a", "kind": "sample"}, {"name": "b", "kind": "sample"}]}
    base.update(over)
    return config.from_dict(base)


def plan(old, new):
    return reload_plan(old, new, sink_names)


def test_nothing_changed_restarts_nothing():
    p = plan(cfg(), cfg())
    assert not any((p.pipeline, p.outbox, p.sinks, p.metrics, p.evidence, p.web, p.log_level))
    assert p.stop_cameras == p.start_cameras == p.renew_lanes == ()


def test_a_filter_change_renews_the_lane_and_keeps_the_source_running():
    new = cfg(cameras=[{"name": "a", "kind": "sample", "min_confidence": 0.4}, {"name": "b", "kind": "sample"}])
    p = plan(cfg(), new)
    assert p.renew_lanes == ("a",) and p.stop_cameras == () and p.start_cameras == ()


def test_a_triggered_cameras_thresholds_and_expectation_renew_its_lane_and_keep_the_source_running():
    old = cfg(cameras=[{"name": "a", "kind": "sample", "mode": "triggered"}, {"name": "b", "kind": "sample"}])
    for key, value in (("faint_below", 0.25), ("smudged_over", 3.0), ("confused_margin", 0.2),
                       ("expect_text", "LOT 1"), ("one_label", False), ("cycle_frames", 3)):
        new = cfg(cameras=[{"name": "a", "kind": "sample", "mode": "triggered", key: value},
                           {"name": "b", "kind": "sample"}])
        p = plan(old, new)
        assert p.renew_lanes == ("a",) and p.stop_cameras == () and p.start_cameras == (), key


def test_a_source_change_restarts_that_camera_and_a_new_one_starts_and_a_removed_one_stops():
    new = cfg(cameras=[{"name": "a", "kind": "sample", "max_fps": 2.0}, {"name": "c", "kind": "sample"}])
    p = plan(cfg(), new)
    assert set(p.stop_cameras) == {"a", "b"} and set(p.start_cameras) == {"a", "c"} and p.renew_lanes == ()


def test_models_outbox_and_sinks():
    old = cfg()
    assert plan(old, cfg(ocr={"threads": 1})).pipeline
    p = plan(old, cfg(outbox={"path": "elsewhere.sqlite3"}))
    assert p.outbox and p.sinks and not p.pipeline
    with_mqtt = cfg(mqtt={"enabled": True})
    with_ha = cfg(mqtt={"enabled": True}, homeassistant={"enabled": True})
    assert sink_names(with_ha) != sink_names(with_mqtt)
    p = plan(with_mqtt, with_ha)   # a new sink: the rows owed to it are set when the outbox opens
    assert p.outbox and p.sinks
    p = plan(old, dataclasses.replace(old, device_id="dock2"))
    assert p.sinks and not p.outbox


def test_log_level_metrics_evidence_web():
    p = plan(cfg(), cfg(service={"log_level": "DEBUG"}, metrics={"port": 9200}, web={"enabled": False},
                        evidence={"enabled": False}))
    assert p.log_level and p.metrics and p.web and p.evidence and not p.sinks


def test_new_recipes_renew_the_triggered_lanes_without_loading_models():
    cams = [{"name": "a", "kind": "sample", "mode": "triggered"}, {"name": "b", "kind": "sample"}]
    old = cfg(cameras=cams, recipes=[{"name": "cans", "expect_text": "LOT 1"}])
    new = cfg(cameras=cams, recipes=[{"name": "cans", "expect_text": "LOT 2"}, {"name": "jars", "expect_text": "J"}])
    p = plan(old, new)
    assert p.renew_lanes == ("a",) and not p.pipeline and p.stop_cameras == ()


def test_the_pipeline_is_rebuilt_when_print_grading_turns_on_or_off():
    triggered = cfg(cameras=[{"name": "a", "kind": "sample", "mode": "triggered"}, {"name": "b", "kind": "sample"}])
    assert plan(cfg(), triggered).pipeline            # a camera starts to judge prints: the pipeline grades them
    ungraded = cfg(cameras=[{"name": "a", "kind": "sample", "mode": "triggered", "faint_below": 0, "smudged_over": 0},
                            {"name": "b", "kind": "sample"}])
    assert plan(triggered, ungraded).pipeline
    assert not plan(cfg(), ungraded).pipeline         # triggered, print quality not judged: nothing to grade
