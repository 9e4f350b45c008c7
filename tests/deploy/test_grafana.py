"""deploy/grafana: the dashboard queries only metrics the code exports, shows every metric it exports,
and every query is valid PromQL for a real Prometheus server; the alert rules name only exported
metrics too; the provisioning files point at the dashboard folder and datasource the dashboard uses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from prometheus_client import CollectorRegistry

from moodshift.connectors import metrics as connector_metrics
from moodshift.pipeline import metrics as pipeline_metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
COMPOSE = DEPLOY / "compose.yaml"

# Series every Prometheus has for each target, besides what the targets export.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

# The series names each metric type exposes (prometheus_client's families carry the base name).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "inf", "nan", "atan2"}
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}


def exported_series(registry: CollectorRegistry) -> dict[str, str]:
    """Every series name ``registry`` can expose → the metric family it belongs to."""
    names = {}
    for family in registry.collect():
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
    return names


EXPORTED = {**exported_series(pipeline_metrics.REGISTRY), **exported_series(connector_metrics.REGISTRY)}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels left out).

    >>> sorted(metric_names('sum by (le) (rate(a_bucket{x="y"}[5m])) / ignoring(z) b > 1e3 or vector(0)'))
    ['a_bucket', 'b']
    """
    if "__name__" in expr:
        raise ValueError(f"selects by __name__; name the metric instead: {expr}")
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if match.group() in KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue  # a keyword, or a function / aggregation call
        names.add(match.group())
    return names


def panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of every dashboard."""
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"]
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable["type"] == "query":
                query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
                # label_values(<series selector>, <label>): the selector is the PromQL part.
                match = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip())
                assert match, f"{path.name}: variable {variable['name']}: unsupported query {query!r}"
                yield f"{path.name}: variable {variable['name']}", match.group(1)


def alert_queries() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"alerts.yml: {rule.get('alert') or rule.get('record')}", rule["expr"]


QUERIES = list(dashboard_queries())


def test_there_is_a_dashboard_with_queries():
    assert DASHBOARDS, "no dashboard JSON in deploy/grafana/dashboards"
    assert len(QUERIES) >= 10


def test_the_name_parser_finds_names_and_only_names():
    assert metric_names('histogram_quantile(0.99, sum by (instance, le) (rate(m_bucket{job="w"}[5m]))) > 1') == {"m_bucket"}
    assert metric_names("(sum(increase(c_total[2h])) or vector(0)) == 0 and on () count(up == 1) > 0") == {"c_total", "up"}
    assert metric_names('time() - max by (source) (g_seconds) offset 5m') == {"g_seconds"}
    assert metric_names('a / ignoring (reason) group_left b') == {"a", "b"}


@pytest.mark.parametrize("where, expr", QUERIES + list(alert_queries()), ids=lambda value: str(value)[:60])
def test_every_query_names_only_exported_metrics(where, expr):
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    unknown = names - set(EXPORTED) - PROMETHEUS_SERIES
    assert not unknown, (
        f"{where}: {sorted(unknown)} not exported by pipeline.metrics or connectors.metrics "
        f"(exported: {sorted(EXPORTED)})"
    )


def test_the_dashboard_shows_every_exported_metric():
    # A metric added to pipeline/metrics.py or connectors/metrics.py gets a panel (or a deliberate
    # decision here) rather than being silently invisible.
    shown = {EXPORTED[name] for _, expr in QUERIES for name in metric_names(expr) if name in EXPORTED}
    missing = set(EXPORTED.values()) - shown
    assert not missing, f"exported but on no dashboard panel: {sorted(missing)}"


def test_every_dashboard_query_is_valid_promql_for_a_real_server(prometheus):
    errors = {}
    for where, expr in QUERIES:
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: a Grafana variable the test does not know: {expr}"
        answer = prometheus.query(expr)
        if answer.get("status") != "success":
            errors[where] = answer.get("error")
    assert not errors, errors


def test_dashboard_json_is_well_formed_for_grafana():
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"], path.name
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels(dashboard):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{path.name}: {panel['title']} wider than the grid"
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == "prometheus", f"{path.name}: {panel['title']}"


def test_provisioning_matches_the_dashboard_and_compose():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert [source["uid"] for source in datasources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "moodshift.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    # compose mounts deploy/grafana/dashboards at exactly the folder the provider reads.
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    assert f"./grafana/dashboards:{path}:ro" in grafana["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
