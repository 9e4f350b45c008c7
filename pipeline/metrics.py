"""Every Prometheus metric of the pipeline, declared in one place.

Names follow Prometheus conventions: ``moodshift_`` prefix, ``_total`` counters, base units
(``_seconds``). The metrics live on the module's own :data:`REGISTRY`, not prometheus_client's
global default one, so that nothing else registered in the process (a library, another app) leaks
into moodshift's ``/metrics``, and tests can read exact values from it. Two of prometheus_client's
standard collectors are registered on it too: the process's own figures (``process_cpu_seconds_total``,
``process_resident_memory_bytes``, open files; Linux) and Python's garbage collections by generation
(``python_gc_collections_total``): a worker runs for weeks, and its collector is tuned
(:mod:`pipeline.worker.cli`).

>>> before = REGISTRY.get_sample_value("moodshift_dead_letters_total", {"reason": "late"}) or 0.0
>>> DEAD_LETTERS.labels(reason="late").inc()
>>> REGISTRY.get_sample_value("moodshift_dead_letters_total", {"reason": "late"}) - before
1.0
>>> body, content_type = exposition()
>>> b"# TYPE moodshift_dead_letters_total counter" in body, content_type.startswith("text/plain")
(True, True)
>>> REGISTRY.get_sample_value("process_cpu_seconds_total") > 0
True
"""

from __future__ import annotations


from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

RECORDS_IN = Counter(
    "moodshift_records_in_total", "Records consumed, by topic.", ["topic"], registry=REGISTRY
)
DEAD_LETTERS = Counter(
    "moodshift_dead_letters_total", "Records sent to the dead-letter topic, by reason.", ["reason"],
    registry=REGISTRY,
)
EVENTS_WINDOWED = Counter(
    "moodshift_events_windowed_total", "Valid posts and videos added to their user's windows (not late).",
    registry=REGISTRY,
)
EVENTS_REPLAYED = Counter(
    "moodshift_events_replayed_total", "Events read again after a crash or rebalance and skipped: their "
    "user's record had applied them already.", registry=REGISTRY,
)
STALE_RECORDS_IGNORED = Counter(
    "moodshift_stale_records_ignored_total", "Users' records read from the changelog at recovery and "
    "ignored: they had applied less than the user's record before them (a late write by a worker that "
    "had lost the partition).", registry=REGISTRY,
)
EVENTS_OUT_OF_ORDER = Counter(
    "moodshift_events_out_of_order_total", "Events Kafka handed over past their partition's next offset "
    "(records before them not delivered yet): held back, and the partition re-read from that offset.",
    registry=REGISTRY,
)
INPUT_OFFSET_GAPS = Counter(
    "moodshift_input_offset_gaps_total", "Offsets an input partition holds no record for (transaction "
    "markers, compaction), passed over after the broker confirmed it.", registry=REGISTRY,
)
CHECKPOINTS = Counter(
    "moodshift_checkpoints_total", "Checkpoints that wrote users' records to the changelog.", registry=REGISTRY
)
CHANGELOG_BYTES = Counter(
    "moodshift_changelog_bytes_total", "Bytes of users' records (keys and values) written to the changelog.",
    registry=REGISTRY,
)
CHECKPOINT_SECONDS = Histogram(
    "moodshift_checkpoint_seconds", "From a checkpoint's start to its records acknowledged by Kafka.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)
LATE_EVENTS = Counter(
    "moodshift_late_events_total", "Events older than their user's watermark allows.", registry=REGISTRY
)
WINDOW_STEPS = Counter(
    "moodshift_window_steps_total", "Closed windows turned into model steps.", registry=REGISTRY
)
BATCH_SIZE = Histogram(
    "moodshift_batch_size", "Steps per batched model call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=REGISTRY,
)
MODEL_STEP_SECONDS = Histogram(
    "moodshift_model_step_seconds", "Duration of one batched model call.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)
# The rest of process_cpu_seconds_total is Kafka, faust and the event loop: the split shows which side
# a worker's CPU goes to (docs/benchmarks.md, "Two threads, one lock").
MODEL_THREAD_CPU_SECONDS = Counter(
    "moodshift_model_thread_cpu_seconds", "CPU seconds of the worker's model thread (decoded events "
    "to outputs: features, windows, model steps, change points), by its own thread clock.", registry=REGISTRY,
)
# From a window's end (event time) to its emission: allowed lateness + batching + the model.
EVENT_TIME_TO_EMIT_SECONDS = Histogram(
    "moodshift_event_time_to_emit_seconds", "Wall-clock time of emission minus the event time it reports.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600), registry=REGISTRY,
)
CHANGE_POINTS = Counter(
    "moodshift_change_points_total", "Change points emitted, by transition.",
    ["from_emotion", "to_emotion"], registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "moodshift_consumer_lag_records", "Records between the consumer's position and the partition's end.",
    ["topic", "partition"], registry=REGISTRY,
)
USERS_IN_STATE = Gauge(
    "moodshift_users_in_state", "Users whose state this worker holds.", registry=REGISTRY
)
GPU_MEMORY_BYTES = Gauge(
    "moodshift_gpu_memory_bytes", "CUDA memory of this worker's process, by device and kind "
    "(allocated: tensors; reserved: held by the caching allocator). Absent without a GPU.",
    ["device", "kind"], registry=REGISTRY,
)
PROCESSING_ERRORS = Counter(
    "moodshift_processing_errors_total", "Errors while processing, by stage.", ["stage"], registry=REGISTRY
)


def exposition(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The text exposition of ``registry`` and its content type, for a ``/metrics`` handler."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
