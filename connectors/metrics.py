"""The connectors' Prometheus metrics, declared once, on their own registry.

Long-running sources serve them with ``--metrics-port`` (:func:`serve`).

>>> RECORDS_SENT.labels(topic="posts").inc()
>>> b"moodshift_connector_records_sent_total" in generate_latest(REGISTRY)
True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server

REGISTRY = CollectorRegistry()

RECORDS_SENT = Counter(
    "moodshift_connector_records_sent", "Records acknowledged by Kafka, by logical topic.",
    ["topic"], registry=REGISTRY,
)
SEND_ERRORS = Counter(
    "moodshift_connector_send_errors", "Records Kafka did not acknowledge after the producer's retries.",
    ["topic"], registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "moodshift_connector_dead_letters", "Inputs sent to the dead-letter topic, by source and reason.",
    ["source", "reason"], registry=REGISTRY,
)
RETRIES = Counter(
    "moodshift_connector_retries", "Backoff waits before retrying a source (rate limits, errors).",
    ["source"], registry=REGISTRY,
)
FETCH_ERRORS = Counter(
    "moodshift_connector_fetch_errors", "Failed or refused outbound fetches, by reason.",
    ["reason"], registry=REGISTRY,
)
CIRCUIT_STATE = Gauge(
    "moodshift_connector_circuit_state", "A polled source's circuit: 0 closed, 1 open (not called), 2 half-open.",
    ["source"], registry=REGISTRY,
)
CIRCUIT_TRANSITIONS = Counter(
    "moodshift_connector_circuit_transitions", "Circuit state changes of a polled source, by new state.",
    ["source", "to"], registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "moodshift_connector_last_success_timestamp_seconds", "When a source last polled or received successfully.",
    ["source"], registry=REGISTRY,
)

__all__ = [
    "REGISTRY", "RECORDS_SENT", "SEND_ERRORS", "DEAD_LETTERS", "RETRIES", "FETCH_ERRORS", "CIRCUIT_STATE",
    "CIRCUIT_TRANSITIONS", "LAST_SUCCESS",
    "generate_latest", "serve",
]


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` for :data:`REGISTRY` on ``port`` in a daemon thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
