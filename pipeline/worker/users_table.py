"""The worker's ``users`` table: a faust table whose recovery keeps each user's most advanced record.

faust does not fence table writes. A worker that loses a user's partition while a batch is in the
model (its session timed out under load, say) still stores that batch's record, and the write can
land in the changelog after records the new owner wrote since. Recovery applies the changelog in
order, so the next owner would start from that stale record, while the group's committed offsets
have moved past the events it lacks: their contribution would be lost from the user's state.

Every record carries the input offsets it has applied (:func:`pipeline.stream.records.is_behind`), so the
stale one is known: a record behind the one before it in the changelog is a late write, counted,
logged and ignored. A worker also keeps the records it holds when the changelog's are behind them:
recovery re-reads a partition from its start (the memory store) or from where the local RocksDB
stopped, and a worker that kept the partition, or its database, holds its newest records already.
Processing is deterministic for a given order of events, so whichever worker produced the record
kept, it is the state an uninterrupted run would have had at that point.

Compaction keeps only a key's last record, so a stale record written last outlives this check;
``processing_guarantee=exactly_once`` prevents it instead (the successor's transactional producer
fences the stalled worker; docs/architecture.md, "State and checkpoints").
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Set

import faust
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP, EventT
from faust.types.tuples import FutureMessage

from moodshift.pipeline import metrics
from moodshift.pipeline.stream.records import is_behind
from moodshift.pipeline.worker.transport import KEY_PARTITIONER

log = logging.getLogger(__name__)


class UsersTable(faust.Table):
    """``app.Table`` for users' records (raw ``bytes`` keys and values, see :mod:`pipeline.stream.records`)
    that never lets a changelog record replace one that has applied more.

    Built as ``app.Table`` builds one:

    >>> app = faust.App("example", broker="kafka://127.0.0.1:9092")
    >>> users = app.tables.add(UsersTable(app, name="users", beacon=app.tables.beacon, key_type=bytes,
    ...                                   value_type=bytes, use_partitioner=True))
    >>> users.changelog_topic.get_topic_name()
    'example-users-changelog'
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_read: dict[bytes, bytes] = {}  # per key, the last record this recovery read
        # The changelog's partitions (as many as the input topics'), once: put() runs per record.
        self._partition_ids = list(range(self.partitions or self.app.conf.topic_partitions))

    async def on_rebalance(self, assigned: Set[TP], revoked: Set[TP], newly_assigned: Set[TP],
                           generation_id: int = 0) -> None:
        self._last_read.clear()  # a recovery starts: it reads the changelog again
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def on_recovery_completed(self, active_tps: Set[TP], standby_tps: Set[TP]) -> None:
        self._last_read.clear()  # it would keep replaced records alive
        await super().on_recovery_completed(active_tps, standby_tps)

    def put(self, key: bytes, value: bytes) -> None:
        """Store a record locally (its changelog write is the caller's). A checkpoint runs outside any
        event, and faust's RocksDB store files a write under the partition of the event being
        processed (none here; in an agent, whichever event came last). A record belongs to its
        key's changelog partition, the one the producer's partitioner picks: the partition of the
        user's input events, whose recovery reads it back."""
        if isinstance(self.data, RocksDBStore):
            partition = self._changelog_partition(key)
            self.data._db_for_partition(partition).put(key, value)  # faust's own _set, minus the event
            self.data._key_index[key] = partition
        else:
            self.data[key] = value

    def _changelog_partition(self, key: bytes) -> int:
        """The key's changelog partition: the one the producer's partitioner picks."""
        return KEY_PARTITIONER(key, self._partition_ids, self._partition_ids)

    async def write_changelog(self, key: bytes, value: bytes) -> FutureMessage:
        """Hand a record to the producer now; the returned future resolves once Kafka has it.

        faust's own ``send_changelog`` goes through its producer buffer, and while that buffer holds
        more than 100 records faust's conductor delivers no input: a checkpoint of 2,000 changed users
        held every batch back until the buffer had drained (p99 latency 2 s in docs/benchmarks.md).
        This is the buffer's own path (``publish_message``, the same producer, the transactional one of
        the key's partition under exactly-once) minus the buffer, and the same sent-callback, which the
        RocksDB store needs to persist its changelog offsets."""
        # The partition given, not left to the producer (``eager_partitioning``): that asks the
        # producer's metadata at once, which a changelog created moments before may not be in yet
        # (a worker crashed at its first checkpoint on a fresh three-broker cluster); sending waits for it.
        message = self.changelog_topic.as_future_message(
            key=key, value=value, partition=self._changelog_partition(key), key_serializer=self.key_serializer,
            value_serializer=self.value_serializer, callback=self._on_changelog_sent)
        await self.changelog_topic.publish_message(message)
        return message

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        held: dict[bytes, bytes | None] = {}  # this batch's newest value per key so far
        kept = []
        for event in batch:
            key, value = event.message.key, event.message.value
            if value is not None:
                previous = self._last_read.get(key)
                if previous is not None and is_behind(value, previous):
                    metrics.STALE_RECORDS_IGNORED.inc()
                    log.warning("ignored a stale record of user %r in the changelog (offset %d): it has "
                                "applied less than the record before it", key, event.message.offset)
                    continue
                self._last_read[key] = value
                current = held[key] if key in held else self.data.get(key)
                if current is not None and is_behind(value, current):
                    continue  # this worker holds a newer record already
            held[key] = value
            kept.append(event)
        super().apply_changelog_batch(kept)
