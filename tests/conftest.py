"""Shared fixtures: one real Kafka broker per test session, unique topics per test.

With MOODSHIFT_BOOTSTRAP_SERVERS set, tests use that cluster (with the other MOODSHIFT_* settings)
instead of starting a local broker.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from pipeline.local_broker import LocalBroker
from pipeline.net import free_port
from pipeline.settings import Settings


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at a running broker: the external one, or a local one started here."""
    if os.environ.get("MOODSHIFT_BOOTSTRAP_SERVERS"):
        yield Settings.load()
        return
    settings = Settings.load(
        overrides={
            "state_dir": tmp_path_factory.mktemp("kafka-state"),
            "broker_port": free_port(),
            "controller_port": free_port(),
            "partitions": 2,
        }
    )
    broker = LocalBroker(settings)
    settings = settings.replace(bootstrap_servers=broker.start())
    yield settings
    broker.stop()


@pytest.fixture
def kafka_settings(kafka_cluster: Settings, tmp_path: Path) -> Settings:
    """Per-test settings: the session's broker, a unique topic prefix and a fresh state folder."""
    return kafka_cluster.replace(topic_prefix=f"t{uuid.uuid4().hex[:10]}.", state_dir=tmp_path / "state")
