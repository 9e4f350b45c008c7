"""Shared by the deploy tests: paths, the Prometheus tools, and one real Prometheus server.

The server is Debian's ``prometheus`` binary on 127.0.0.1, scraping two small ``prometheus_client``
HTTP servers in this process: one serves :data:`pipeline.metrics.REGISTRY` (as a worker's
``/metrics`` does), one :data:`connectors.metrics.REGISTRY`. It loads ``deploy/prometheus/alerts.yml``,
so the rules are evaluated by a real server too. Every wait is bounded; the server is stopped at the
end of the session.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from moodshift.pipeline.local.net import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"

INSTALL_HINT = "run deploy/system-tools.sh test (as root it installs Debian's prometheus package; make test runs it)"
SCRAPE_INTERVAL_S = 1
STARTUP_TIMEOUT_S = 30
SCRAPE_TIMEOUT_S = 30


def tool(name: str) -> str:
    """The path of a Prometheus tool; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: {INSTALL_HINT}", pytrace=False)
    return path


def run_tool(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a tool; its output is in the assertion message when it fails."""
    result = subprocess.run(
        [tool(args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="session")
def promtool() -> Any:
    """``promtool(*args)``: run promtool in the repository root, asserting it exits 0."""
    tool("promtool")
    return lambda *args, timeout=30: run_tool("promtool", *args, timeout=timeout)


@dataclass
class PrometheusServer:
    url: str
    worker_target: str
    connector_target: str
    log: Path

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET an HTTP API endpoint; the decoded JSON, whatever the status (errors carry JSON too)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            return json.load(error)

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("/api/v1/query", query=expr)

    def wait_for(self, expr: str, timeout: float = SCRAPE_TIMEOUT_S) -> list[dict[str, Any]]:
        """Poll an instant query until it returns a non-empty vector; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = self.query(expr)
            if answer.get("status") == "success" and answer["data"]["result"]:
                return answer["data"]["result"]
            time.sleep(0.25)
        pytest.fail(f"{expr!r} still empty after {timeout}s: {answer}\n{self.log.read_text()[-3000:]}")


@contextlib.contextmanager
def run_prometheus(scrape_configs: list[dict[str, Any]], workdir: Path) -> Iterator[tuple[str, Path]]:
    """A real Prometheus server on 127.0.0.1 with deploy/prometheus/alerts.yml and these scrape
    configs (the job names of deploy/prometheus/prometheus.yml, with static targets in place of its
    DNS discovery); yields its URL and log once it is ready, and stops it afterwards."""
    binary = tool("prometheus")
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
        "rule_files": [str(PROMETHEUS_DIR / "alerts.yml")],
        "scrape_configs": scrape_configs,
    }
    config_file = workdir / "prometheus.yml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "prometheus.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, f"--config.file={config_file}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready after {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    from moodshift.connectors import metrics as connector_metrics
    from prometheus_client import start_http_server

    from moodshift.pipeline import metrics as pipeline_metrics

    workdir = tmp_path_factory.mktemp("prometheus")

    # Some values to find: the counters' label sets appear only once a child exists.
    pipeline_metrics.RECORDS_IN.labels(topic="moodshift.posts").inc(3)
    pipeline_metrics.USERS_IN_STATE.set(7)
    connector_metrics.RECORDS_SENT.labels(topic="posts").inc(2)

    # Each registry served on a free port, as the worker (faust's web server) and the connectors do.
    worker_server, _ = start_http_server(0, addr="127.0.0.1", registry=pipeline_metrics.REGISTRY)
    connector_server, _ = start_http_server(0, addr="127.0.0.1", registry=connector_metrics.REGISTRY)
    worker_target = f"127.0.0.1:{worker_server.server_port}"
    connector_target = f"127.0.0.1:{connector_server.server_port}"
    # The job names of deploy/prometheus/prometheus.yml (the alert rules select on them), with
    # static targets in place of its DNS discovery.
    scrape_configs = [
        {"job_name": "moodshift-worker", "static_configs": [{"targets": [worker_target]}]},
        {"job_name": "moodshift-connector", "static_configs": [{"targets": [connector_target]}]},
    ]
    try:
        with run_prometheus(scrape_configs, workdir) as (url, log):
            yield PrometheusServer(url, worker_target, connector_target, log)
    finally:
        worker_server.shutdown()
        connector_server.shutdown()
