"""Fixtures of the connector tests: settings with a media folder, stand-in servers, producers."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from moodshift.connectors.producer import EventProducer
from moodshift.connectors.topics import CONNECTOR_TOPICS, ensure_topics
from moodshift.pipeline.settings import Settings

from .standins import StandIn


@pytest.fixture
def connector_settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    """Per-test Kafka settings whose connector topics exist, with loopback fetching allowed."""
    settings = kafka_settings.replace(
        media_dir=tmp_path / "media", fetch_allow_private=True, fetch_timeout_seconds=2.0,
        backoff_initial_seconds=0.05, backoff_max_seconds=0.2, circuit_cooldown_seconds=0.2,
    )
    ensure_topics(settings, CONNECTOR_TOPICS)
    return settings


@pytest.fixture
def producer(connector_settings: Settings) -> Iterator[EventProducer]:
    producer = EventProducer(connector_settings, source="test")
    yield producer
    producer.close()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.close()
