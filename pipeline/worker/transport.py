"""faust's aiokafka transport as the worker uses it: its consumer commits what checkpoints hold
(:mod:`pipeline.worker.checkpoint_consumer`), fetches once per batch interval and hands records to
the streams without four tasks each, its producer is idempotent in every processing guarantee.

Why a fetch per batch interval: faust builds the worker's aiokafka consumer with
``fetch_max_wait_ms=1500``, ``fetch_min_bytes=1`` and no setting to change them. The broker then
answers a fetch as soon as any record arrives, and each answer wakes faust's consumer thread and
then the event loop, which takes the records over from it: at 2,000 posts/s, paced, the consumer
thread switched 585 times a second and took 0.043 ms of CPU per post against 0.006 in a worker
draining a backlog, and the model thread lost Python's lock at each wake-up. The worker takes at
most one batch per ``batch_max_wait_ms`` at such rates anyway, so the broker may hold a fetch that
long (:func:`fetch_wait_ms`) unless it has :data:`FETCH_MIN_BYTES` for it; with a backlog it always has.
In paced drains at 2,000 posts/s with 200 ms batches that took 0.06-0.08 ms off the worker's
0.46-0.50 ms of CPU per post; with 50 ms batches it gained nothing (docs/benchmarks.md, "Paced input").
The wait is kept within 10-100 ms. Not longer: aiokafka sends one fetch request per broker at a time,
and leaves a partition whose fetched records the worker has not consumed yet out of the next
request; that request then asks only for the broker's other partitions (``videos``, faust's assignor
topic) and, when they have no data, the broker holds it for the whole wait while the partitions with
a backlog wait too. At faust's 1.5 s a busy worker sat idle for up to a second at about every other
checkpoint (docs/benchmarks.md, "Paced batches"); at 100 ms the same load held no idle second. Not
shorter: an idle worker sends a fetch to each broker once per wait.

Why no tasks per record: faust's fetch loop (``Consumer._drain_messages``) hands every record to
the streams through ``wait_first(deliver(record), suspend_flow.wait())``, so that a rebalance can
abandon a delivery that waits (the table recovery it starts needs the loop to deliver changelog
records). mode's ``wait_first`` wraps each in a task, adds two more (the consumer stopped or
crashed) and cancels three: about 0.05 ms of CPU per record (docs/benchmarks.md, "Delivery
without tasks"). A delivery (``Conductor.on_message``) awaits only while faust's flow is
suspended, while the conductor updates its subscriptions, while the producer's buffer is over its
limit, or for room in a full stream queue; when none holds, :class:`WorkerConsumer` awaits it directly, and it runs to its
end without giving the event loop to anything else (tests/pipeline/worker/test_transport.py checks
that premise against the installed faust). A worker behind its input keeps its stream's queue full:
each record then waited for the one slot the agent's next read freed, through mode's tasks, and
was handed over as soon as it was free (a wake-up per record, the fetch loop taking the lock from
the model thread each time). Instead, while only a full queue stands in the way, the fetch loop
polls until the queue is half empty (every 10 ms) and then hands over the next records one after
another without waiting.

Why a producer buffer of its own: faust's buffer holds the records of faust's own sends (table
writes through ``send_changelog``, the context's dead letters) and its ``size`` reads
``app.conf.producer_threaded`` through faust's settings registry each time; the conductor asks it
for every record it delivers (``wait_until_ebb``), and so does :meth:`WorkerConsumer.delivery_cannot_wait`:
about 1% of a busy worker's CPU (a py-spy profile, docs/benchmarks.md). The worker never runs faust's
threaded producer, so :class:`UnthreadedProducerBuffer` counts its pending queue directly.

Why a partitioner of its own: aiokafka's default partitioner computes murmur2 of the key in pure
Python for every record, and the worker sends one per output and one per changed user at each
checkpoint, always for the same users: about 3% of a busy worker's event loop (docs/benchmarks.md).
:class:`KeyPartitioner` picks the same partitions and remembers the hash of each recent key.

Why idempotent: a produce request whose response is lost (a request timeout on a busy machine, a
broker restart) is sent again, and without idempotence the broker appends it twice. Outputs carry
ids to deduplicate by, but a dead letter or a changelog record written twice is counted twice.
faust turns idempotence on only for ``exactly_once`` (``Producer._settings_extra`` when
``App.in_transaction``), for its transactional producers and its plain one (the outputs) alike;
this turns it on for ``at_least_once`` too.

What it changes besides (aiokafka 0.14): the producer asks the broker for a producer id when it
starts, needs ``acks=all`` (the worker's setting anyway), and retries a batch that failed with a
retriable error until it is acknowledged instead of expiring it after ``request_timeout``: while the
broker is away the worker waits for it; an error that is not retriable still fails the publish and
stops the worker (docs/architecture.md, "No acknowledgement without a checkpoint").
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Mapping, Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner, murmur2
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from mode.services import WaitResults

from moodshift.pipeline.worker.checkpoint_consumer import CheckpointConsumer


#: The broker may hold a fetch request of the worker's consumer for data to arrive at most this
#: long ...
FETCH_MAX_WAIT_MS = 100
#: ... and at least this long, whatever the batch interval ...
FETCH_MIN_WAIT_MS = 10
#: ... unless it has this many bytes for it: more than a batch, so that at the rates a worker keeps
#: up with it answers once per wait.
FETCH_MIN_BYTES = 1 << 20
#: A full stream queue takes deliveries again once it is down to this fraction of its size ...
ROOM_FRACTION = 0.5
#: ... which the fetch loop looks at this often meanwhile.
ROOM_POLL_SECONDS = 0.01


def fetch_wait_ms(batch_max_wait_ms: int) -> int:
    """How long the broker may hold the worker's fetch: one batch interval, within 10-100 ms.

    >>> fetch_wait_ms(50), fetch_wait_ms(0), fetch_wait_ms(1000)
    (50, 10, 100)
    """
    return min(FETCH_MAX_WAIT_MS, max(FETCH_MIN_WAIT_MS, batch_max_wait_ms))


class PacedFetchConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """faust's consumer thread, its aiokafka consumer fetching with the transport's
    ``fetch_wait_ms`` and :data:`FETCH_MIN_BYTES`, and table recovery given the broker's end
    offsets (:meth:`_highwaters`)."""

    def _create_worker_consumer(self, transport: aiokafka_driver.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # faust passes its own values to the constructor; aiokafka reads them again when start() builds
        # its fetcher (tests/pipeline/worker/test_transport.py reads them back from a started consumer's fetcher).
        consumer._fetch_max_wait_ms = transport.fetch_wait_ms
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        """The broker's end offsets of ``partitions``: under ``read_committed`` (exactly_once), their
        last stable offsets.

        faust's own, under exactly_once, returns aiokafka's ``last_stable_offset``: the value from the
        partition's last fetch response, None before the first. Table recovery asks right after a
        rebalance assigned the changelog partitions; when no fetch had been answered yet (the broker
        holds a fetch until it has ``fetch_min_bytes``; a busy worker may not have sent one) recovery
        took the changelog for empty and the worker went on without its users' records, silently
        (a kill -9 test lost each user's idle-closed last window). aiokafka's ``end_offsets`` asks the
        broker, at the consumer's isolation level."""
        return await self._ensure_consumer().end_offsets(partitions)


class WorkerConsumer(CheckpointConsumer):
    """:class:`CheckpointConsumer` on a :class:`PacedFetchConsumerThread`, delivering records
    without tasks when the delivery cannot wait."""

    def _new_consumer_thread(self) -> PacedFetchConsumerThread:
        return PacedFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def delivery_cannot_wait(self) -> bool:
        """Whether faust's delivery of a record to the streams (``Conductor.on_message``) would run
        to its end without awaiting anything."""
        return self._flowing() and not self._full_stream_queues()

    def _flowing(self) -> bool:
        """Whether nothing but a full stream queue could make a delivery wait."""
        app = self.app
        lock, buffer = app.topics._tp_to_callback_lock, app.producer.buffer
        return (not self.suspend_flow.is_set() and app.flow_control.is_active()
                and not lock.locked() and not lock._waiters
                and buffer.size <= buffer.max_messages)

    def _full_stream_queues(self) -> list[Any]:
        return [channel.queue for channel in self.app.topics._topics if channel.queue.full()]

    async def _until_room(self, full: list[Any]) -> None:
        """Wait until the queues ``full`` are at most half full, polling, while the flow goes on (a
        rebalance, a stop or a crash ends the wait)."""
        while (self._flowing() and not self.should_stop and not self.crashed
               and any(queue.qsize() > queue.maxsize * ROOM_FRACTION for queue in full)):
            await asyncio.sleep(ROOM_POLL_SECONDS)

    async def wait_first(self, *coros: Any, timeout: float | None = None) -> WaitResults:
        # faust's fetch loop is the only caller: wait_first(deliver(record), suspend_flow.wait()).
        delivery, *others = coros
        if timeout is None and self._flowing():
            full = self._full_stream_queues()
            if full:
                try:
                    await self._until_room(full)
                except asyncio.CancelledError:  # the fetcher stops: nothing delivered, nothing left unawaited
                    for coro in coros:
                        if asyncio.iscoroutine(coro):
                            coro.close()
                    raise
            if not full or self.delivery_cannot_wait():
                for other in others:
                    if asyncio.iscoroutine(other):
                        other.close()  # suspend_flow.wait(), never started: closed, not left unawaited
                return WaitResults([delivery], [await delivery], False)
        return await super().wait_first(*coros, timeout=timeout)


class KeyPartitioner:
    """aiokafka's default partitioner (the Java client's: murmur2 of the key, a random available
    partition without one), with the hashes of the last :data:`REMEMBERED_KEYS` keys remembered.

    >>> partitioner = KeyPartitioner()
    >>> partitioner(b"user-1", [0, 1, 2, 3], [0, 1, 2, 3]) == DefaultPartitioner()(b"user-1", [0, 1, 2, 3], [])
    True
    """

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)
        return all_partitions[_key_hash(key) % len(all_partitions)]


#: How many keys' hashes :class:`KeyPartitioner` remembers (about 100 bytes each; a worker's active users).
REMEMBERED_KEYS = 1 << 17


@functools.lru_cache(maxsize=REMEMBERED_KEYS)
def _key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


#: The worker's producers' partitioner (faust's ``producer_partitioner``), and the users table's.
KEY_PARTITIONER = KeyPartitioner()


class UnthreadedProducerBuffer(ProducerBuffer):
    """faust's producer buffer for a producer that is not threaded: its size is its pending queue's."""

    @property
    def size(self) -> int:
        return len(self.pending._queue)


class IdempotentProducer(aiokafka_driver.Producer):
    """faust's aiokafka producer with ``enable_idempotence`` in every processing guarantee, and an
    :class:`UnthreadedProducerBuffer`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.app.conf.producer_threaded:
            raise ValueError("the worker's producer is not threaded (producer_threaded=False)")
        self.buffer = UnthreadedProducerBuffer(loop=self.loop, beacon=self.beacon)
        self.buffer.app = self.app

    def _settings_extra(self) -> Mapping[str, Any]:
        # acks=all as idempotence requires it, whatever producer_acks says (faust pairs them likewise).
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class WorkerTransport(aiokafka_driver.Transport):
    """faust's aiokafka transport with :class:`WorkerConsumer` and :class:`IdempotentProducer`;
    ``batch_max_wait_ms``: the worker's batch interval, which sets its fetch wait (:func:`fetch_wait_ms`)."""

    Consumer = WorkerConsumer
    Producer = IdempotentProducer

    def __init__(self, *args: Any, batch_max_wait_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_wait_ms = fetch_wait_ms(batch_max_wait_ms)
