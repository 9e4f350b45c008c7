"""The logical topic names, in one place, and creating the topics.

Full names carry the settings' prefix: ``settings.topic(POSTS)`` → ``moodshift.posts``. Every topic is
delete-retention (events, not state): nothing here is keyed state that compaction could shrink.

>>> from moodshift.connectors.settings import ConnectorSettings
>>> ConnectorSettings(topic_prefix="dev.").topic(POSTS)
'dev.posts'
"""

from __future__ import annotations

import logging
from typing import Iterable

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from moodshift.connectors.settings import ConnectorSettings

log = logging.getLogger(__name__)

POSTS = "posts"
VIDEOS = "videos"
WEATHER = "weather"
MARKET = "market"
DEAD_LETTERS = "dead-letters"
EMOTION_CHANGES = "emotion-changes"
EMOTION_STEPS = "emotion-steps"

CONNECTOR_TOPICS = (POSTS, VIDEOS, WEATHER, MARKET, DEAD_LETTERS)
ALL_TOPICS = CONNECTOR_TOPICS + (EMOTION_CHANGES, EMOTION_STEPS)


def ensure_topics(settings: ConnectorSettings, names: Iterable[str] = ALL_TOPICS) -> list[str]:
    """Create the logical topics ``names`` that do not exist yet; return the full names created."""
    wanted = {settings.topic(name) for name in names}
    admin = KafkaAdminClient(**settings.kafka_python_config())
    try:
        missing = sorted(wanted - set(admin.list_topics()))
        new_topics = [
            NewTopic(
                name,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs={
                    "cleanup.policy": "delete",
                    "retention.ms": str(settings.retention_hours * 3_600_000),
                    "max.message.bytes": str(max(settings.max_message_bytes + 65_536, 1_048_588)),
                },
            )
            for name in missing
        ]
        if new_topics:
            try:
                admin.create_topics(new_topics)
            except TopicAlreadyExistsError:  # another connector created one in between: fine
                pass
            log.info("created topics %s", ", ".join(missing))
        return missing
    finally:
        admin.close()
