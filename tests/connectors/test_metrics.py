"""Connector metrics: Prometheus names, the /metrics endpoint, the status line."""

from __future__ import annotations


import requests

from moodshift.connectors import metrics
from moodshift.connectors.cli import status_line
from moodshift.pipeline.local.net import free_port


def test_metrics_are_served_with_prometheus_names_and_summed_in_the_status_line() -> None:
    metrics.DEAD_LETTERS.labels(source="metrics-test", reason="late").inc(2)
    metrics.RECORDS_SENT.labels(topic="weather").inc()
    port = free_port()
    metrics.serve(port, addr="127.0.0.1")
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'moodshift_connector_dead_letters_total{reason="late",source="metrics-test"} 2.0' in text
    for name in ("records_sent_total", "retries_total", "fetch_errors_total", "send_errors_total"):
        assert f"# HELP moodshift_connector_{name} " in text
    line = status_line()
    assert "records_sent[weather]=" in line and "dead_letters=" in line
