"""The producer against the real broker: keys, topics, the size limit, delivery failures."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from kafka.admin import KafkaAdminClient

from moodshift.connectors import metrics
from moodshift.connectors.producer import DeliveryFailed, EventProducer
from moodshift.connectors.record import Reason
from moodshift.connectors.schemas import DeadLetter, MarketTick, Post
from moodshift.connectors.topics import DEAD_LETTERS, MARKET, POSTS, ensure_topics
from moodshift.pipeline.settings import Settings
from tests.kafka_topics import create_topic

from .standins import read_topic

pytestmark = pytest.mark.kafka
T = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_events_land_in_their_topic_keyed_and_timestamped(connector_settings: Settings, producer: EventProducer) -> None:
    """Timestamped when sent, not at their (here 2024) event time: the broker keeps an idempotent
    producer's state by its records' timestamps, and old ones let a retry after a broker restart be
    written twice (the broker-restart scenario, tests/reliability)."""
    sent_from = time.time() * 1000
    for i in range(6):
        producer.send_event(POSTS, Post(event_id=f"e{i}", user_id=f"u{i % 2}", event_time=T, text=str(i)))
    producer.send_event(MARKET, MarketTick(symbol="^GSPC", observed_time=T, open=1, high=1, low=1, close=1,
                                           volume=0, interval="1d"))
    producer.flush()
    posts = read_topic(connector_settings, POSTS, 6)
    assert sorted(Post.from_json_bytes(r.value).text for r in posts) == [str(i) for i in range(6)]
    assert {r.key for r in posts} == {b"u0", b"u1"}
    assert all(sent_from - 1 <= r.timestamp <= time.time() * 1000 + 1 for r in posts)
    for user in (b"u0", b"u1"):  # one key, one partition
        assert len({r.partition for r in posts if r.key == user}) == 1
    (tick,) = read_topic(connector_settings, MARKET, 1)
    assert tick.key == b"^GSPC"


def test_a_record_over_the_size_limit_becomes_an_oversized_dead_letter(connector_settings: Settings) -> None:
    settings = connector_settings.replace(max_message_bytes=2_000)
    with EventProducer(settings, source="test") as producer:
        assert not producer.send_event(POSTS, Post(event_id="big", user_id="u", event_time=T, text="x" * 5_000))
    (record,) = read_topic(settings, DEAD_LETTERS, 1)
    letter = DeadLetter.from_json_bytes(record.value)
    assert (letter.reason, letter.topic, letter.key, record.key) == (Reason.OVERSIZED, POSTS, "u", b"u")
    assert Post.from_json_bytes(letter.original).text == "x" * 5_000
    assert "over max_message_bytes=2000" in letter.message
    assert read_topic(settings, POSTS, 1, timeout=2) == []


def test_topics_are_created_once_with_the_settings_partitions(connector_settings: Settings) -> None:
    assert ensure_topics(connector_settings, [POSTS]) == []  # the fixture created them already
    admin = KafkaAdminClient(**connector_settings.kafka_python_config())
    (described,) = admin.describe_topics([connector_settings.topic(POSTS)])
    admin.close()
    assert len(described["partitions"]) == connector_settings.partitions


def test_undeliverable_records_are_counted_and_raised_on_flush(kafka_settings: Settings) -> None:
    # A topic whose broker-side limit is smaller than the record: the broker refuses it, for good.
    create_topic(kafka_settings, kafka_settings.topic(POSTS), configs={"max.message.bytes": "200"})
    before = metrics.SEND_ERRORS.labels(topic=POSTS)._value.get()
    producer = EventProducer(kafka_settings.replace(producer_delivery_timeout_ms=5_000), source="test")
    producer.send_event(POSTS, Post(event_id="e", user_id="u", event_time=T, text="x" * 500))
    with pytest.raises(DeliveryFailed, match="1 record"):
        producer.flush(timeout=10)
    assert metrics.SEND_ERRORS.labels(topic=POSTS)._value.get() == before + 1
    producer.flush()  # failures are reported once
    producer.client.close()
