"""What the broker says about the worker group's input partitions, asked without joining the group.

:class:`pipeline.worker.positions.InputPositions` starts each partition at the group's committed offset and,
when an event comes past its position, needs to know whether the log really has records in between
(they were not delivered yet) or none (a transaction marker, compaction). A separate aiokafka
consumer answers both: it carries the group id only to read committed offsets, never subscribes,
and reads at most one record to probe a position.
"""

from __future__ import annotations

from typing import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from moodshift.pipeline.settings import Settings


class GroupOffsets:
    """Committed offsets of ``group_id`` and the offset of the first record at or after a position."""

    def __init__(self, settings: Settings, group_id: str) -> None:
        self.settings, self.group_id = settings, group_id
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> AIOKafkaConsumer:
        """The consumer, started on first use (aiokafka builds it inside the running loop)."""
        if self._consumer is None:
            exactly_once = self.settings.processing_guarantee == "exactly_once"
            consumer = AIOKafkaConsumer(**self.settings.aiokafka_config(), group_id=self.group_id,
                                        enable_auto_commit=False,
                                        isolation_level="read_committed" if exactly_once else "read_uncommitted")
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def starting_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[TopicPartition, int]:
        """Where each partition's processing starts: the committed offset, or the log's first offset
        when nothing is committed or the committed records were deleted (retention)."""
        consumer = await self.start()
        wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
        beginnings = await consumer.beginning_offsets(wanted)
        starts = {}
        for tp in wanted:
            committed = await consumer.committed(tp)
            starts[tp] = max(committed if committed is not None else 0, beginnings[tp])
        return starts

    async def first_record_at_or_after(self, topic: str, partition: int, offset: int,
                                       timeout_ms: int = 10_000) -> int | None:
        """The offset of the first record the log holds at or after ``offset`` (None: none yet)."""
        consumer = await self.start()
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        records = await consumer.getmany(tp, timeout_ms=timeout_ms, max_records=1)
        found = records.get(tp)
        return found[0].offset if found else None
