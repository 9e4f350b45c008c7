"""deploy/prometheus: promtool accepts the config and rules, every alert fires on its synthetic
failure (alerts_test.yml), and a real Prometheus server scrapes moodshift's metrics and answers
queries for them."""

from __future__ import annotations

import time

import pytest

from pathlib import Path

from moodshift.pipeline import metrics as pipeline_metrics

PROMETHEUS_TESTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts_test.yml"

ALERTS = {
    "MoodshiftWorkerDown", "MoodshiftNoWorkers", "MoodshiftConsumerLagGrowing", "MoodshiftStaleRecordsWritten",
    "MoodshiftDeadLetterRateHigh", "MoodshiftNoChangePoints", "MoodshiftInferenceLatencyHigh",
}


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-k8s.yml"])
def test_promtool_accepts_the_scrape_configs_and_their_rule_files(promtool, config):
    out = promtool("check", "config", f"deploy/prometheus/{config}").stdout
    assert f"SUCCESS: deploy/prometheus/{config} is valid" in out


def test_promtool_accepts_the_alert_rules(promtool):
    out = promtool("check", "rules", "deploy/prometheus/alerts.yml").stdout
    assert f"SUCCESS: {len(ALERTS)} rules found" in out


def test_each_alert_fires_on_its_synthetic_series(promtool):
    # alerts_test.yml holds, for every alert, a series on which it must fire (and a time, or a
    # healthy neighbour, where it must not). promtool exits non-zero on any mismatch.
    promtool("test", "rules", "deploy/prometheus/alerts_test.yml")
    tested = set()
    import yaml

    for case in yaml.safe_load((PROMETHEUS_TESTS).read_text())["tests"]:
        for check in case["alert_rule_test"]:
            if check["exp_alerts"]:
                tested.add(check["alertname"])
    assert tested == ALERTS, f"alerts without a firing test: {ALERTS - tested}"


def test_prometheus_scrapes_the_worker_metrics(prometheus):
    up = prometheus.wait_for('up{job="moodshift-worker"} == 1')
    assert up[0]["metric"]["instance"] == prometheus.worker_target

    expected = pipeline_metrics.REGISTRY.get_sample_value("moodshift_records_in_total", {"topic": "moodshift.posts"})
    result = prometheus.wait_for('moodshift_records_in_total{job="moodshift-worker", topic="moodshift.posts"}')
    assert float(result[0]["value"][1]) == expected
    gauge = prometheus.wait_for('moodshift_users_in_state{job="moodshift-worker"}')
    assert float(gauge[0]["value"][1]) == 7
    # A histogram arrives as _bucket/_sum/_count series, which the dashboard's quantiles need.
    buckets = prometheus.wait_for('moodshift_model_step_seconds_bucket{job="moodshift-worker"}')
    assert {series["metric"]["le"] for series in buckets} >= {"0.001", "+Inf"}


def test_prometheus_scrapes_the_connector_metrics(prometheus):
    result = prometheus.wait_for('moodshift_connector_records_sent_total{job="moodshift-connector", topic="posts"}')
    assert float(result[0]["value"][1]) >= 2


def test_the_server_loads_and_evaluates_every_alert_rule(prometheus):
    deadline = time.monotonic() + 30
    while True:
        groups = prometheus.api("/api/v1/rules")["data"]["groups"]
        rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
        if rules and all(rule["health"] != "unknown" for rule in rules.values()):
            break
        assert time.monotonic() < deadline, f"rules not evaluated after 30s: {rules}"
        time.sleep(0.5)
    assert set(rules) == ALERTS
    broken = {name: rule.get("lastError") for name, rule in rules.items() if rule["health"] != "ok"}
    assert not broken, broken
    # Once the worker is scraped and the rules evaluated again, neither down alert is active (one
    # may be pending from an evaluation before the first scrape).
    prometheus.wait_for('up{job="moodshift-worker"} == 1')
    down = {"MoodshiftWorkerDown", "MoodshiftNoWorkers"}
    deadline = time.monotonic() + 10
    while True:
        active = {alert["labels"]["alertname"] for alert in prometheus.api("/api/v1/alerts")["data"]["alerts"]}
        if not active & down:
            break
        assert time.monotonic() < deadline, f"still active with the worker up: {active & down}"
        time.sleep(0.5)
