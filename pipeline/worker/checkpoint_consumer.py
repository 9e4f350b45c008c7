"""faust's Kafka consumer, committing exactly the input offsets the last checkpoint covers.

faust commits, per partition, the highest run of offsets acknowledged in a row. The worker
acknowledges an event only once its user's record is in the changelog (:mod:`pipeline.worker.state`),
but faust acknowledges events of its own that no record includes:

- when an agent crashes, ``Stream.noack_take`` switches the stream's acknowledgements back on, and
  the stream acknowledges every event it is handed until the worker has stopped; with nothing
  committed yet faust then commits them (issue 12, CI: a publish failure before the first checkpoint
  lost the second half of one partition, 89 of 348 steps);
- events skipped during a rebalance (an old generation, paused flow) are acknowledged;
- offsets its fetcher jumped over (records fetched before a seek) count as acknowledged at the
  next commit.

:class:`CheckpointConsumer` keeps faust's commit machinery (its timer, the commit before a
rebalance, the transactions of ``exactly_once``) and replaces only where the offsets come from:
the offsets a checkpoint reported with :meth:`CheckpointConsumer.checkpointed`. Acknowledgements
still matter for what they tell faust before a rebalance: which delivered events are still in
flight.

faust also drops every record at or below the highest offset it has handed over per partition (its
"read offset"). For the input topics the worker's own gate (:mod:`pipeline.worker.positions`)
decides what is a duplicate, and faust's rule got in its way: when the gate seeks a partition back
to the position it needs, records of a fetch from before the seek can still be handed over after it,
each raising the read offset past the position, so faust dropped what the seek re-read and the gate
sought again, for ever (issue 12, make stress: a restarted worker stalled 3.5 minutes with no
output). :class:`ReadOffsets` keeps faust's rule for table changelogs only.

When faust drops a fetch (its flow stopped), it seeks the partitions back to their committed
offsets; :meth:`CheckpointConsumer.perform_seek` also sends an input partition with nothing
committed yet back to its beginning (aiokafka leaves such a partition where the fetch ended).

Once the worker has crashed (a publish or a checkpoint failed: :meth:`WorkerState.or_stop`) it commits
nothing more. faust's consumer thread, which every commit goes through, shuts down by itself on a
crash, while faust's stop still commits once (``Consumer.wait_empty``), and so would a checkpoint
the crash overtook: a commit sent to the thread then failed ("Event loop is closed", which cut
faust's stop short before the tables stopped and the producer flushed) or was never answered (the
stop hung until the SIGKILL two minutes later; issue 12, make test). Nothing is lost by not
committing: the successor replays from the last commit, and the records it recovers skip what
they applied.

It also fetches again the changelog records faust dropped during a table recovery. A fetch that
began before a rebalance can come back after it, holding records of a changelog partition the
recovery has just sought to; faust finds its flow stopped, drops the whole fetch and seeks the
partitions back to their committed offsets (``Consumer.getmany``), but no offsets are committed
for a changelog partition, so its records were consumed and never reached the table: the recovery
then waited forever ("No event received for active tp ..."; issue 12, CI). :meth:`perform_seek`
sends each changelog partition still in recovery back to the last record the table received.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator, Mapping, Optional, Set

from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from faust.types.transports import TPorTopicSet

log = logging.getLogger(__name__)


class ReadOffsets(dict):
    """faust's read offsets (``Consumer._read_offset``), consulted only for the topics
    ``is_changelog`` names: for any other partition faust hands over every record it fetches.

    >>> offsets = ReadOffsets(lambda topic: topic.endswith("-changelog"))
    >>> offsets[TP("posts", 0)] = 149; offsets[TP("users-changelog", 0)] = 7
    >>> offsets[TP("posts", 0)], offsets[TP("users-changelog", 0)], offsets[TP("users-changelog", 1)]
    (None, 7, None)
    """

    def __init__(self, is_changelog: Callable[[str], bool]) -> None:
        super().__init__()
        self._is_changelog = is_changelog

    def __getitem__(self, tp: TP) -> Optional[int]:
        return super().get(tp) if self._is_changelog(tp.topic) else None


class CheckpointConsumer(aiokafka_driver.Consumer):
    """A faust consumer that commits, per input partition, the offset after the last checkpointed event."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._checkpointed: dict[TP, int] = {}
        self._read_offset = ReadOffsets(lambda topic: topic in self.app.tables.changelog_topics)

    def checkpointed(self, offsets: Mapping[TP, int]) -> None:
        """The records of every event below ``offsets[tp]`` are in the changelog: it may be committed."""
        for tp, offset in offsets.items():
            if offset > self._checkpointed.get(tp, -1):
                self._checkpointed[tp] = offset

    async def commit(self, topics: Optional[TPorTopicSet] = None, start_new_transaction: bool = True) -> bool:
        if self.crashed:  # the consumer thread is shutting down (see the module's docstring)
            log.info("not committing: the worker crashed (its successor replays from the last commit)")
            return False
        return await super().commit(topics, start_new_transaction=start_new_transaction)

    async def on_partitions_assigned(self, assigned: Set[TP], generation_id: int = 0) -> None:
        # The checkpoint before the rebalance committed what this worker applied; from here on another
        # worker may have committed further, and an offset of ours must never move the group back.
        self._checkpointed.clear()
        await super().on_partitions_assigned(assigned, generation_id)

    async def perform_seek(self) -> None:
        await super().perform_seek()  # input partitions: back to their committed offsets
        # aiokafka's seek_to_committed moves only partitions with a committed offset above 0: one that
        # nothing was committed for yet stayed where the dropped fetch had left it, past records that
        # no one had processed, until newer records made the gate seek back; with none, for ever
        # (make test: a fresh worker with posts waiting stalled 20 minutes).
        changelogs = self.app.tables.changelog_topics
        uncommitted = sorted(tp for tp in self.assignment()
                             if tp.topic not in changelogs and not self._committed_offset.get(tp))
        if uncommitted:  # through faust's consumer thread; aiokafka wants its own TopicPartition here
            await self._thread.seek_to_beginning(*(TopicPartition(tp.topic, tp.partition) for tp in uncommitted))
        recovery = self.app.tables.recovery
        if not recovery.in_recovery:
            return
        # The recovery's offsets are the last record of each partition its table received; it seeks
        # to that same offset itself (and skips the record seen already).
        assigned = self.assignment()
        received = {tp: max(recovery.active_offsets.get(tp) or 0, 0)
                    for tp in recovery.active_tps if tp in assigned}
        if received:
            where = ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in sorted(received.items()))
            log.info("table recovery: reading %s again from the last records the table received (a fetch "
                     "came back while faust's flow was stopped, and faust drops such a fetch)", where)
            await self.seek_wait(received)

    def _filter_tps_with_pending_acks(self, topics=None) -> Iterator[TP]:  # type: ignore[no-untyped-def]
        return (tp for tp in list(self._checkpointed)
                if topics is None or tp in topics or tp.topic in topics)

    def _new_offset(self, tp: TP) -> Optional[int]:
        # faust's own bookkeeping of acknowledged offsets and gaps decides nothing here; dropped so
        # that it does not grow for the weeks a worker runs.
        self._acked.pop(tp, None)
        self._acked_index.pop(tp, None)
        self._gap.pop(tp, None)
        return self._checkpointed.get(tp)
