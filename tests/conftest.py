"""Shared fixtures: one real Kafka broker per test session, unique topics per test.

The session's broker has two listeners: PLAINTEXT (``kafka_cluster``, ``kafka_settings``) and SASL_SSL
with SCRAM-SHA-512 and a throwaway CA (``secure_cluster``, ``secure_settings``), whose user gets a
random password for the session.

With MOODSHIFT_BOOTSTRAP_SERVERS set, tests use that cluster (with the other MOODSHIFT_* settings)
instead of starting a local broker; the SASL_SSL tests then need those settings to say SASL_SSL.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from moodshift.pipeline.local.broker import LocalBroker
from moodshift.pipeline.local.net import free_port
from moodshift.pipeline.settings import Settings

SCRAM_USER = "moodshift-test"


# -- make stress: the disruption scenarios many times, with CPU burners beside them -----------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("moodshift stress")
    group.addoption("--repeat", type=int, default=1, help="run each test marked stress this many times")
    group.addoption("--cpu-burners", type=int, default=0, help="busy processes beside the tests (make stress)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    repeat = metafunc.config.getoption("repeat")
    if repeat > 1 and _marked_stress(metafunc.definition):
        metafunc.fixturenames.append("stress_run")
        metafunc.parametrize("stress_run", range(1, repeat + 1), ids=lambda run: f"run{run}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--repeat``: round by round (every scenario's run 1, then every run 2, ...), so that a
    stress run stopped early still has as many runs of each scenario."""
    if config.getoption("repeat") > 1:
        items.sort(key=lambda item: getattr(item, "callspec", None) and item.callspec.params.get("stress_run") or 0)


def _marked_stress(definition: pytest.Function) -> bool:
    """The test, or one of its parameter sets (``pytest.param(..., marks=pytest.mark.stress)``)."""
    return definition.get_closest_marker("stress") is not None or any(
        mark.name == "stress" for parametrize in definition.iter_markers("parametrize")
        for values in parametrize.args[1] for mark in getattr(values, "marks", ()))


@pytest.fixture(scope="session", autouse=True)
def cpu_burners(request: pytest.FixtureRequest) -> Iterator[None]:
    """``--cpu-burners N``: N processes spinning for the whole session, so that the workers under
    test share the cores as on a busy machine. Each spins only while pytest is its parent: a pytest
    killed before its teardown left two burners spinning for an hour beside later work."""
    count = request.config.getoption("cpu_burners")
    spin = f"import os\nwhile os.getppid() == {os.getpid()}: pass"
    burners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(count)]
    yield
    for burner in burners:
        burner.kill()
        burner.wait()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """With ``--repeat``: passes out of runs per scenario."""
    if config.getoption("repeat") <= 1:
        return
    counts: dict[str, list[int]] = {}
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if report.when == "call" or outcome != "passed":
                scenario = _scenario(report.nodeid)
                runs = counts.setdefault(scenario, [0, 0])
                runs[0] += outcome == "passed"
                runs[1] += 1
    terminalreporter.write_sep("=", "stress: passes / runs per scenario")
    for scenario, (passed, runs) in sorted(counts.items()):
        terminalreporter.write_line(f"{passed:3d} / {runs:3d}  {scenario}")


def _scenario(nodeid: str) -> str:
    """A test id without its ``runN`` part: ``t.py::test[run3-exactly_once]`` → ``t.py::test[exactly_once]``."""
    name, _, params = nodeid.partition("[")
    kept = [part for part in params.rstrip("]").split("-") if part and not re.fullmatch(r"run\d+", part)]
    return name + (f"[{'-'.join(kept)}]" if kept else "")



@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The local broker started for this session, or None when an external cluster is used."""
    if os.environ.get("MOODSHIFT_BOOTSTRAP_SERVERS"):
        yield None
        return
    settings = Settings.load(
        overrides={
            "state_dir": tmp_path_factory.mktemp("kafka-state"),
            "broker_port": free_port(),
            "controller_port": free_port(),
            "broker_sasl_ssl_port": free_port(),
            "sasl_username": SCRAM_USER,
            "sasl_password": secrets.token_urlsafe(18),
            "partitions": 2,
        }
    )
    broker = LocalBroker(settings)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_cluster(session_broker: LocalBroker | None) -> Settings:
    """Settings pointing at a running broker's PLAINTEXT listener: the external one, or the session's."""
    if session_broker is None:
        return Settings.load()
    return session_broker.settings.replace(
        bootstrap_servers=session_broker.bootstrap, broker_sasl_ssl_port=0, sasl_username="", sasl_password="",
    )


@pytest.fixture(scope="session")
def secure_cluster(session_broker: LocalBroker | None) -> Settings:
    """Settings for the SASL_SSL listener: SCRAM-SHA-512, the broker's CA file, the user and password."""
    if session_broker is None:
        settings = Settings.load()
        if settings.security_protocol != "SASL_SSL":
            pytest.skip("the external cluster's settings (MOODSHIFT_SECURITY_PROTOCOL) are not SASL_SSL")
        return settings
    return session_broker.settings.replace(
        bootstrap_servers=session_broker.sasl_ssl_bootstrap, security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512", ssl_cafile=str(session_broker.tls.ca_file), broker_sasl_ssl_port=0,
    )


@pytest.fixture
def kafka_settings(kafka_cluster: Settings, tmp_path: Path) -> Settings:
    """Per-test settings: the session's broker, a unique topic prefix and a fresh state folder."""
    return _for_one_test(kafka_cluster, tmp_path)


@pytest.fixture
def secure_settings(secure_cluster: Settings, tmp_path: Path) -> Settings:
    """Like ``kafka_settings``, over the SASL_SSL listener with the session user's credentials."""
    return _for_one_test(secure_cluster, tmp_path)


def _for_one_test(cluster: Settings, tmp_path: Path) -> Settings:
    return cluster.replace(topic_prefix=f"t{uuid.uuid4().hex[:10]}.", state_dir=tmp_path / "state")
