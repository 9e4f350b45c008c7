"""The worker's transport (pipeline/worker/transport.py): against the real broker, its producer is
idempotent in either processing guarantee, its consumer fetches once per batch interval and answers
table recovery with the broker's end offsets; and its consumer delivers records to the streams
without tasks exactly when faust's delivery cannot wait."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import pytest
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP, Message
from kafka import KafkaConsumer, KafkaProducer

from moodshift.connectors import topics as topic_names
from moodshift.pipeline.settings import PROCESSING_GUARANTEES, Settings
from moodshift.pipeline.worker.app import build_app
from moodshift.pipeline.worker.transport import FETCH_MIN_BYTES, KEY_PARTITIONER
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


@contextlib.asynccontextmanager
async def started_consumer(thread: Any) -> AsyncIterator[Any]:
    """The aiokafka consumer the worker's consumer ``thread`` builds, started (which builds its fetcher
    from the consumer's settings, talking to the broker) and the thread's own."""
    thread._consumer = consumer = thread._create_worker_consumer(thread.transport)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


@pytest.mark.kafka
@pytest.mark.parametrize("batch_max_wait_ms, fetch_wait", [(50, 50), (400, 100)])
def test_the_workers_consumer_fetches_once_per_batch_interval(kafka_settings: Settings, batch_max_wait_ms: int,
                                                              fetch_wait: int) -> None:
    """faust builds the consumer with a 1.5 s fetch wait and no minimum; the fetcher of the consumer
    the worker's consumer thread builds and starts must wait a batch interval, at most 100 ms, for
    1 MiB (docs/benchmarks.md, "Paced batches", "Paced input")."""
    thread = build_app(kafka_settings.replace(batch_max_wait_ms=batch_max_wait_ms)).consumer._new_consumer_thread()

    async def started_fetch_settings() -> tuple[int, int]:
        async with started_consumer(thread) as consumer:
            return consumer._fetcher._fetch_max_wait_ms, consumer._fetcher._fetch_min_bytes

    assert asyncio.run(started_fetch_settings()) == (fetch_wait, FETCH_MIN_BYTES) == (fetch_wait, 1 << 20)


@pytest.mark.kafka
@pytest.mark.parametrize("guarantee", PROCESSING_GUARANTEES)
def test_table_recovery_is_given_the_brokers_end_offsets_before_any_fetch(
        kafka_settings: Settings, guarantee: str) -> None:
    """faust's recovery asks the consumer thread for the changelog's highwaters right after a
    rebalance assigned it. Under exactly_once faust answers with the partition's last stable offset
    from its last fetch response: None before the first, so recovery read nothing and the worker
    lost its users' records (issue 12). The answer must be the broker's, fetched or not: the last
    stable offset under read_committed (below an open transaction), the log's end otherwise."""
    settings = kafka_settings.replace(processing_guarantee=guarantee)
    topic = settings.topic(f"highwaters-{guarantee}")
    create_topic(settings, topic)
    producer = KafkaProducer(**settings.kafka_python_config(), transactional_id=f"{topic}-writer")
    producer.init_transactions()
    producer.begin_transaction()
    for _ in range(3):
        producer.send(topic, key=b"user-1", value=b"committed", partition=0)
    producer.commit_transaction()  # offsets 0-2, the commit marker at 3
    producer.begin_transaction()
    for _ in range(2):
        producer.send(topic, key=b"user-1", value=b"open", partition=0)
    producer.flush()  # offsets 4-5, in a transaction still open
    app = build_app(settings)
    app.in_worker = True  # as faust.Worker sets it: with exactly_once, the consumer reads committed records
    thread = app.consumer._new_consumer_thread()
    tp = TP(topic, 0)

    async def highwater_before_any_fetch() -> int:
        async with started_consumer(thread) as consumer:
            consumer.assign([tp])
            return (await thread._highwaters([tp]))[tp]

    try:
        highwater = asyncio.run(highwater_before_any_fetch())
    finally:
        producer.abort_transaction()
        producer.close()
    assert highwater == (4 if guarantee == "exactly_once" else 6)


def record(topic: str, offset: int) -> Message:
    return Message(topic, 0, offset, 0.0, 0, None, b"user-1", b"{}", None, generation_id=0)


def ran_to_its_end(delivery) -> bool:  # type: ignore[no-untyped-def]
    """Steps the coroutine once: True if it finished without awaiting anything (closed either way)."""
    try:
        delivery.send(None)
    except StopIteration:
        return True
    delivery.close()
    return False


def test_a_record_is_delivered_without_tasks_exactly_when_the_delivery_cannot_wait(tmp_path) -> None:
    """The premise of ``WorkerConsumer.wait_first``'s shortcut, against the installed faust: with
    ``delivery_cannot_wait()`` the conductor's delivery finishes in one step; with each condition
    the predicate names it awaits, and the predicate is False."""
    settings = Settings(state_dir=tmp_path)
    posts = settings.topic(topic_names.POSTS)

    async def scenario() -> None:
        app = build_app(settings)  # in the running loop: mode's services take the loop they start in
        consumer, conductor = app.consumer, app.topics
        channel = app.topic(posts, key_type=bytes, value_type=bytes, key_serializer="raw",
                            value_serializer="raw", maxsize=4).clone(is_iterator=True)
        conductor.add(channel)
        await conductor.on_partitions_assigned({TP(posts, 0)})
        app.flow_control.resume()
        offsets = iter(range(100))

        assert consumer.delivery_cannot_wait()
        assert ran_to_its_end(conductor.on_message(record(posts, next(offsets))))
        done = await consumer.wait_first(conductor.on_message(record(posts, next(offsets))),
                                         consumer.suspend_flow.wait())
        assert done.done and not done.stopped and channel.queue.qsize() == 2

        app.flow_control.suspend()  # a rebalance began
        assert not consumer.delivery_cannot_wait()
        assert not ran_to_its_end(conductor.on_message(record(posts, next(offsets))))
        app.flow_control.resume()

        async with conductor._tp_to_callback_lock:  # the conductor updates its subscriptions
            assert not consumer.delivery_cannot_wait()
            assert not ran_to_its_end(conductor.on_message(record(posts, next(offsets))))

        while not channel.queue.full():  # the stream fell behind
            channel.queue.put_nowait(None)
        assert not consumer.delivery_cannot_wait()
        assert not ran_to_its_end(conductor.on_message(record(posts, next(offsets))))
        channel.queue.clear()

        for _ in range(app.producer.buffer.max_messages + 1):  # table writes waiting to be sent
            app.producer.buffer.pending.put_nowait(None)
        assert app.producer.buffer.size == app.producer.buffer.max_messages + 1  # UnthreadedProducerBuffer
        assert not consumer.delivery_cannot_wait()
        while not app.producer.buffer.pending.empty():
            app.producer.buffer.pending.get_nowait()

        # A delivery that waits goes through mode's wait_first, which a rebalance abandons.
        consumer.suspend_flow.set()
        assert not consumer.delivery_cannot_wait()
        app.flow_control.suspend()
        waiting = await consumer.wait_first(conductor.on_message(record(posts, next(offsets))),
                                            consumer.suspend_flow.wait())
        assert waiting.done and waiting.results == [True]  # suspend_flow.wait() won

    asyncio.run(scenario())


def test_a_full_stream_queue_takes_records_again_once_half_empty_and_a_rebalance_still_abandons_the_wait(
        tmp_path) -> None:
    """A worker behind its input: the fetch loop waits until the stream's queue is half empty, then
    hands over records without waiting; a rebalance that begins meanwhile ends the wait in mode's
    ``wait_first`` as before."""
    settings = Settings(state_dir=tmp_path)
    posts = settings.topic(topic_names.POSTS)

    async def scenario() -> None:
        app = build_app(settings)
        consumer, conductor = app.consumer, app.topics
        channel = app.topic(posts, key_type=bytes, value_type=bytes, key_serializer="raw",
                            value_serializer="raw").clone(is_iterator=True)
        channel._queue = app.FlowControlQueue(maxsize=8, clear_on_resume=True)  # as faust's, smaller
        conductor.add(channel)
        await conductor.on_partitions_assigned({TP(posts, 0)})
        app.flow_control.resume()
        offsets = iter(range(100))
        for _ in range(8):
            await consumer.wait_first(conductor.on_message(record(posts, next(offsets))), consumer.suspend_flow.wait())
        assert channel.queue.full()

        delivering = asyncio.ensure_future(consumer.wait_first(
            conductor.on_message(record(posts, next(offsets))), consumer.suspend_flow.wait()))
        await asyncio.sleep(0.05)
        assert not delivering.done()  # the queue is full
        taken = []
        for _ in range(3):  # the agent takes three: the queue is not half empty yet
            taken.append(channel.queue.get_nowait().message.offset)
            await asyncio.sleep(0.05)
            assert not delivering.done()
        assert not delivering.done() and channel.queue.qsize() == 5
        taken.append(channel.queue.get_nowait().message.offset)  # now half empty
        delivered = await asyncio.wait_for(delivering, 5)
        assert delivered.done and not delivered.stopped and channel.queue.qsize() == 5
        assert taken + [channel.queue.get_nowait().message.offset for _ in range(5)] == list(range(9))

        for _ in range(8):
            await consumer.wait_first(conductor.on_message(record(posts, next(offsets))), consumer.suspend_flow.wait())
        waiting = asyncio.ensure_future(consumer.wait_first(
            conductor.on_message(record(posts, next(offsets))), consumer.suspend_flow.wait()))
        await asyncio.sleep(0.05)
        consumer.suspend_flow.set()  # a rebalance began
        app.flow_control.suspend()
        abandoned = await asyncio.wait_for(waiting, 5)
        assert abandoned.done and abandoned.results == [True]  # suspend_flow.wait() won
        assert channel.queue.qsize() == 8  # the waiting record was not delivered

    asyncio.run(scenario())


def test_the_key_partitioner_picks_the_default_partitioners_partitions() -> None:
    default = DefaultPartitioner()
    keys = [f"user-{k}".encode() for k in range(2_000)] + [b"", "ünï".encode(), bytes(range(256))]
    for partitions in ([0], [0, 1, 2], list(range(12)), [3, 5, 8]):
        for _ in range(2):  # the second time from the remembered hashes
            assert [KEY_PARTITIONER(key, partitions, partitions) for key in keys] == \
                [default(key, partitions, partitions) for key in keys]
    assert {KEY_PARTITIONER(None, [0, 1, 2, 3], [2, 3]) for _ in range(200)} == {2, 3}  # no key: an available one
