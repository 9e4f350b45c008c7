"""Every Prometheus metric of the pipeline, declared in one place.

Names follow Prometheus conventions: ``moodshift_`` prefix, ``_total`` counters, base units
(``_seconds``). Metrics live on their own :class:`CollectorRegistry`, not prometheus_client's global
one, so tests and several apps in one process stay apart: the worker uses the module-level
:data:`METRICS` (on :data:`REGISTRY`); a test builds ``PipelineMetrics(CollectorRegistry())``.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> metrics = PipelineMetrics(CollectorRegistry())
>>> metrics.dead_letters.labels(reason="late").inc()
>>> b'moodshift_dead_letters_total{reason="late"} 1.0' in generate_latest(metrics.registry)
True
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Seconds from a window's end (event time) to its step's emission: lateness + batching + model.
_EMIT_DELAY_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_MODEL_STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class PipelineMetrics:
    """The pipeline's metrics, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.records_in = Counter(
            "moodshift_records_in_total", "Records consumed, by topic.", ["topic"], registry=registry
        )
        self.dead_letters = Counter(
            "moodshift_dead_letters_total", "Records sent to the dead-letter topic, by reason.", ["reason"],
            registry=registry,
        )
        self.late_events = Counter(
            "moodshift_late_events_total", "Events older than their user's watermark allows.", registry=registry
        )
        self.window_steps = Counter(
            "moodshift_window_steps_total", "Closed windows turned into model steps.", registry=registry
        )
        self.batch_size = Histogram(
            "moodshift_batch_size", "Steps per batched model call.", buckets=_BATCH_SIZE_BUCKETS, registry=registry
        )
        self.model_step_seconds = Histogram(
            "moodshift_model_step_seconds", "Duration of one batched model call.", buckets=_MODEL_STEP_BUCKETS,
            registry=registry,
        )
        self.event_time_to_emit_seconds = Histogram(
            "moodshift_event_time_to_emit_seconds", "Wall-clock time of emission minus the window's end.",
            buckets=_EMIT_DELAY_BUCKETS, registry=registry,
        )
        self.change_points = Counter(
            "moodshift_change_points_total", "Change points emitted, by transition.",
            ["from_emotion", "to_emotion"], registry=registry,
        )
        self.consumer_lag = Gauge(
            "moodshift_consumer_lag_records", "Records between the committed offset and the end of the partition.",
            ["topic", "partition"], registry=registry,
        )
        self.users_in_state = Gauge(
            "moodshift_users_in_state", "Users with state held by this worker.", registry=registry
        )
        self.processing_errors = Counter(
            "moodshift_processing_errors_total", "Errors while processing, by stage.", ["stage"], registry=registry
        )


REGISTRY = CollectorRegistry()
METRICS = PipelineMetrics(REGISTRY)


def start_metrics_server(
    port: int, registry: CollectorRegistry = REGISTRY, addr: str = "0.0.0.0"
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` for ``registry`` on a daemon thread; ``server.shutdown()`` stops it."""
    return start_http_server(port, addr=addr, registry=registry)
