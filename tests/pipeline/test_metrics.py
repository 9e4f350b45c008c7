"""Metric names, labels, isolation and the /metrics server."""

from __future__ import annotations

import urllib.request

from prometheus_client import CollectorRegistry, generate_latest

from pipeline.metrics import METRICS, REGISTRY, PipelineMetrics, start_metrics_server


def exposition(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_names_follow_prometheus_conventions():
    names = {metric.name for metric in REGISTRY.collect()}
    assert names == {
        "moodshift_records_in",
        "moodshift_dead_letters",
        "moodshift_late_events",
        "moodshift_window_steps",
        "moodshift_batch_size",
        "moodshift_model_step_seconds",
        "moodshift_event_time_to_emit_seconds",
        "moodshift_change_points",
        "moodshift_consumer_lag_records",
        "moodshift_users_in_state",
        "moodshift_processing_errors",
    }
    counters = {m.name for m in REGISTRY.collect() if m.type == "counter"}
    text = exposition(REGISTRY)
    for name in counters:
        assert f"# TYPE {name}_total counter" in text  # exposed with the _total suffix


def test_each_registry_is_isolated_and_labels_are_what_the_glue_uses():
    a, b = PipelineMetrics(CollectorRegistry()), PipelineMetrics(CollectorRegistry())
    a.records_in.labels(topic="moodshift.posts").inc(3)
    a.change_points.labels(from_emotion="calm", to_emotion="joy").inc()
    a.consumer_lag.labels(topic="moodshift.posts", partition="2").set(17)
    a.batch_size.observe(8)
    a.model_step_seconds.observe(0.02)
    text = exposition(a.registry)
    assert 'moodshift_records_in_total{topic="moodshift.posts"} 3.0' in text
    assert 'moodshift_change_points_total{from_emotion="calm",to_emotion="joy"} 1.0' in text
    assert 'moodshift_consumer_lag_records{partition="2",topic="moodshift.posts"} 17.0' in text
    assert 'moodshift_batch_size_bucket{le="8.0"} 1.0' in text
    assert "moodshift_model_step_seconds_count 1.0" in text
    assert "moodshift_records_in_total{" not in exposition(b.registry)
    assert METRICS.registry is REGISTRY


def test_metrics_server_serves_its_registry():
    metrics = PipelineMetrics(CollectorRegistry())
    metrics.late_events.inc(2)
    server, thread = start_metrics_server(0, metrics.registry, addr="127.0.0.1")
    try:
        port = server.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "moodshift_late_events_total 2.0" in body
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
