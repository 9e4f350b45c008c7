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
from typing import Iterator, Mapping, Optional, Set

from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

log = logging.getLogger(__name__)


class CheckpointConsumer(aiokafka_driver.Consumer):
    """A faust consumer that commits, per input partition, the offset after the last checkpointed event."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._checkpointed: dict[TP, int] = {}

    def checkpointed(self, offsets: Mapping[TP, int]) -> None:
        """The records of every event below ``offsets[tp]`` are in the changelog: it may be committed."""
        for tp, offset in offsets.items():
            if offset > self._checkpointed.get(tp, -1):
                self._checkpointed[tp] = offset

    async def on_partitions_assigned(self, assigned: Set[TP], generation_id: int = 0) -> None:
        # The checkpoint before the rebalance committed what this worker applied; from here on another
        # worker may have committed further, and an offset of ours must never move the group back.
        self._checkpointed.clear()
        await super().on_partitions_assigned(assigned, generation_id)

    async def perform_seek(self) -> None:
        await super().perform_seek()  # input partitions: back to their committed offsets
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


class CheckpointTransport(aiokafka_driver.Transport):
    """faust's aiokafka transport with :class:`CheckpointConsumer` as its consumer."""

    Consumer = CheckpointConsumer
