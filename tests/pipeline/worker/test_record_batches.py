"""A batch's outputs as record batches (pipeline/worker/record_batches.py), against the real broker,
through the worker's own producer."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from kafka import KafkaConsumer
from kafka.partitioner.default import murmur2

from moodshift.pipeline.settings import Settings
from moodshift.pipeline.worker.app import PRODUCER_BATCH_BYTES, build_app
from moodshift.pipeline.worker.record_batches import send_as_batches
from tests.kafka_topics import create_topic


def read_all(settings: Settings, *topics: str) -> list:
    consumer = KafkaConsumer(*topics, **settings.kafka_python_config(), auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000)
    try:
        return list(consumer)
    finally:
        consumer.close()


@pytest.mark.kafka
def test_each_record_lands_on_its_keys_partition_in_order_and_batches_stay_under_the_producers_size(
        kafka_settings: Settings) -> None:
    """Keyed records land where Kafka's default partitioner puts their key (kafka-python's own
    murmur2 here, the one the connectors place users' events with), each key's in the order given;
    a record without a key lands too; records for one partition beyond the producer's batch size
    go in more than one batch."""
    small, large = kafka_settings.topic("small"), kafka_settings.topic("large")
    create_topic(kafka_settings, small, partitions=4)
    create_topic(kafka_settings, large, partitions=3)
    big = b"x" * (PRODUCER_BATCH_BYTES * 2 // 5)  # two fit in a batch, a third does not
    records = [(small, f"user-{i % 15}".encode(), f"{i}".encode()) for i in range(60)]
    records += [(small, None, b"no key"), *[(large, b"user-big", big + bytes([i])) for i in range(6)]]
    app = build_app(kafka_settings)

    async def send() -> int:
        await app.producer.start()
        try:
            acks = await send_as_batches(app.producer._ensure_producer(), records)
            await asyncio.wait_for(asyncio.gather(*acks), 60)
            return len(acks)
        finally:
            await app.producer.stop()

    batches = asyncio.run(send())
    received = read_all(kafka_settings, small, large)
    assert sorted((r.topic, r.key or b"", r.value) for r in received) == sorted((t, k or b"", v) for t, k, v in records)
    by_key = defaultdict(list)
    for record in sorted(received, key=lambda r: (r.topic, r.partition, r.offset)):
        if record.key is not None:
            partitions = 4 if record.topic == small else 3
            assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % partitions
        by_key[record.topic, record.key].append(record.value)
    assert by_key == {(topic, key): [v for t, k, v in records if (t, k) == (topic, key)] for topic, key, _ in records}
    small_partitions = {record.partition for record in received if record.topic == small}
    assert batches == len(small_partitions) + 3  # one per partition; the six large records in three
