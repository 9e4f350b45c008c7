"""The users table: its local writes with both stores (no broker: stores open lazily), and its
changelog writes against the real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust
import pytest
from kafka import KafkaConsumer
from kafka.partitioner.default import murmur2

from moodshift.pipeline.settings import Settings
from moodshift.pipeline.worker.app import build_app
from moodshift.pipeline.worker.users_table import UsersTable
from tests.kafka_topics import create_topic

PARTITIONS = 4


def users_table(store: str, folder: Path) -> UsersTable:
    app = faust.App("users-table-test", broker="kafka://127.0.0.1:1", store=f"{store}://", datadir=str(folder))
    return app.tables.add(UsersTable(app, name="users", beacon=app.tables.beacon, key_type=bytes, value_type=bytes,
                                     partitions=PARTITIONS, use_partitioner=True))


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_record_put_outside_any_event_is_read_back(store: str, tmp_path: Path) -> None:
    users = users_table(store, tmp_path)
    users.put(b"user-7", b"record 1")
    users.put(b"user-7", b"record 2")
    assert users.data.get(b"user-7") == b"record 2"


def test_rocksdb_files_a_record_under_its_keys_changelog_partition(tmp_path: Path) -> None:
    """The partition the Kafka producer's partitioner (murmur2, as in Java) gives the key: the one
    whose changelog holds the record and whose recovery reads it back into this local database."""
    users = users_table("rocksdb", tmp_path)
    keys = [f"user-{i}".encode() for i in range(20)]
    for key in keys:
        users.put(key, b"record of " + key)
    for key in keys:
        expected = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        holding = [p for p in range(PARTITIONS) if users.data._db_for_partition(p).get(key) is not None]
        assert holding == [expected], key
    assert len({(murmur2(key) & 0x7FFFFFFF) % PARTITIONS for key in keys}) > 1  # the keys spread out


@pytest.mark.kafka
def test_a_changelog_record_waits_for_the_metadata_of_a_changelog_created_moments_before(kafka_settings: Settings) -> None:
    """A worker declares its changelog after its producer started, and the producer's metadata may
    not know the new topic at the first checkpoint (on a three-broker cluster, the broker it asked
    had not learnt of it yet). Choosing the partition from that metadata (faust's
    ``eager_partitioning``) crashed a worker there; the record must wait for the metadata and land in
    its key's partition. Here the topic is created behind the producer's back, so that its metadata
    lacks the topic for sure."""
    app = build_app(kafka_settings.replace(partitions=PARTITIONS))  # the worker's app and table
    users = app.tables["users"]
    topic = users.changelog_topic.get_topic_name()
    keys = [f"user-{i}".encode() for i in range(8)]

    async def first_checkpoint() -> list[int]:
        await app.producer.start()
        try:
            create_topic(kafka_settings, topic, PARTITIONS)
            cluster = app.producer._producer.client.cluster
            assert cluster.partitions_for_topic(topic) is None, "the producer knew the topic: nothing tested"
            sent = [await users.write_changelog(key, b"record of " + key) for key in keys]
            return [(await asyncio.wait_for(message, 60)).partition for message in sent]
        finally:
            await app.producer.stop()

    partitions = asyncio.run(first_checkpoint())
    assert partitions == [(murmur2(key) & 0x7FFFFFFF) % PARTITIONS for key in keys]
    consumer = KafkaConsumer(topic, **kafka_settings.kafka_python_config(), auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000)
    try:
        stored = {(record.partition, record.key): record.value for record in consumer}
    finally:
        consumer.close()
    assert stored == {(p, key): b"record of " + key for p, key in zip(partitions, keys)}
