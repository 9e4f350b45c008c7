"""Metric names, labels, the exposition and the /metrics server."""

from __future__ import annotations

import gc

from prometheus_client import REGISTRY as DEFAULT_REGISTRY

from moodshift.pipeline import metrics
from moodshift.pipeline.metrics import REGISTRY


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# prometheus_client's process and garbage-collector collectors, registered on moodshift's registry.
STANDARD_FAMILIES = {
    "process_cpu_seconds": "counter",
    "process_virtual_memory_bytes": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "python_gc_objects_collected": "counter",
    "python_gc_objects_uncollectable": "counter",
    "python_gc_collections": "counter",
}


def test_names_follow_prometheus_conventions():
    families = {m.name: m.type for m in REGISTRY.collect()}
    assert families == STANDARD_FAMILIES | {
        "moodshift_records_in": "counter",
        "moodshift_dead_letters": "counter",
        "moodshift_late_events": "counter",
        "moodshift_window_steps": "counter",
        "moodshift_batch_size": "histogram",
        "moodshift_model_step_seconds": "histogram",
        "moodshift_model_thread_cpu_seconds": "counter",
        "moodshift_event_time_to_emit_seconds": "histogram",
        "moodshift_change_points": "counter",
        "moodshift_consumer_lag_records": "gauge",
        "moodshift_users_in_state": "gauge",
        "moodshift_gpu_memory_bytes": "gauge",
        "moodshift_processing_errors": "counter",
        "moodshift_events_windowed": "counter",
        "moodshift_events_replayed": "counter",
        "moodshift_stale_records_ignored": "counter",
        "moodshift_events_out_of_order": "counter",
        "moodshift_input_offset_gaps": "counter",
        "moodshift_checkpoints": "counter",
        "moodshift_changelog_bytes": "counter",
        "moodshift_checkpoint_seconds": "histogram",
    }
    body, _ = metrics.exposition()
    for name, kind in families.items():
        if kind == "counter":
            assert f"# TYPE {name}_total counter" in body.decode()  # exposed with the _total suffix


def test_the_process_and_its_garbage_collections_are_measured():
    cpu_before = value("process_cpu_seconds_total")
    full_before = value("python_gc_collections_total", generation="2")
    sum(i * i for i in range(2_000_000))
    gc.collect()
    assert value("process_cpu_seconds_total") > cpu_before
    assert value("python_gc_collections_total", generation="2") == full_before + 1
    assert value("process_resident_memory_bytes") > 10 * 2**20


def test_metrics_stay_off_the_default_registry():
    assert DEFAULT_REGISTRY.get_sample_value("moodshift_late_events_total") is None


def test_labels_are_what_the_glue_uses():
    before = value("moodshift_records_in_total", topic="moodshift.posts")
    metrics.RECORDS_IN.labels(topic="moodshift.posts").inc(3)
    metrics.CHANGE_POINTS.labels(from_emotion="calm", to_emotion="joy").inc()
    metrics.CONSUMER_LAG.labels(topic="moodshift.posts", partition="2").set(17)
    metrics.PROCESSING_ERRORS.labels(stage="model").inc()
    metrics.BATCH_SIZE.observe(8)
    assert value("moodshift_records_in_total", topic="moodshift.posts") - before == 3
    assert value("moodshift_change_points_total", from_emotion="calm", to_emotion="joy") >= 1
    assert value("moodshift_consumer_lag_records", topic="moodshift.posts", partition="2") == 17
    assert value("moodshift_batch_size_bucket", le="8.0") >= 1
