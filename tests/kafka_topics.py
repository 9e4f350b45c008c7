"""A topic made for one test, on the test's broker, with the settings' client configuration."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from moodshift.connectors.settings import ConnectorSettings


def create_topic(settings: ConnectorSettings, name: str, partitions: int = 1,
                 configs: dict[str, str] | None = None) -> None:
    """Create ``name`` (full name, replication factor 1) with topic-level ``configs``."""
    admin = KafkaAdminClient(**settings.kafka_python_config())
    try:
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    finally:
        admin.close()
