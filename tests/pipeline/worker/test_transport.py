"""The worker's transport against the real broker: its producer is idempotent in either processing
guarantee, its consumer fetches with a short wait (pipeline/worker/transport.py)."""

from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaConsumer

from moodshift.pipeline.settings import PROCESSING_GUARANTEES, Settings
from moodshift.pipeline.worker.app import build_app
from moodshift.pipeline.worker.transport import FETCH_MAX_WAIT_MS
from tests.kafka_topics import create_topic


@pytest.mark.kafka
@pytest.mark.parametrize("guarantee", PROCESSING_GUARANTEES)
def test_the_workers_producer_is_idempotent_in_either_processing_guarantee(
        kafka_settings: Settings, guarantee: str) -> None:
    """The broker gives an idempotent producer an id (a plain one has none: aiokafka keeps no
    transaction manager for it). faust itself turns idempotence on only in a running worker with
    exactly_once (``App.in_transaction``); here no worker runs, so with faust's producer both fail."""
    settings = kafka_settings.replace(processing_guarantee=guarantee)
    app = build_app(settings)
    topic = settings.topic(f"idempotence-{guarantee}")
    create_topic(settings, topic)

    async def send_two() -> int:
        await app.producer.start()
        try:
            sent = [await app.producer.send(topic, key=b"user-1", value=f"record {i}".encode(), partition=0,
                                            timestamp=None, headers=None) for i in range(2)]
            await asyncio.wait_for(asyncio.gather(*sent), 60)
            return app.producer._producer._txn_manager.producer_id
        finally:
            await app.producer.stop()

    producer_id = asyncio.run(send_two())
    assert producer_id >= 0
    consumer = KafkaConsumer(topic, **settings.kafka_python_config(), auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000)
    try:
        records = list(consumer)
    finally:
        consumer.close()
    assert [record.value for record in records] == [b"record 0", b"record 1"]


@pytest.mark.kafka
def test_the_workers_consumer_fetches_with_a_short_wait(kafka_settings: Settings) -> None:
    """faust builds the consumer with a 1.5 s fetch wait; the fetcher of the consumer the worker's
    consumer thread builds and starts must wait 100 ms (docs/benchmarks.md, "Paced batches")."""
    app = build_app(kafka_settings)
    thread = app.consumer._new_consumer_thread()

    async def started_fetch_wait() -> int:
        consumer = thread._create_worker_consumer(app.transport)
        await consumer.start()  # builds the fetcher from the consumer's settings, talking to the broker
        try:
            return consumer._fetcher._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(started_fetch_wait()) == FETCH_MAX_WAIT_MS == 100
