"""The worker's exact per-user state, between faust and the plain-Python pieces.

Three rules, each the answer to a way issue 12 lost data:

- **Events apply in offset order** (:class:`pipeline.worker.positions.InputPositions`): an event faust hands
  over past its partition's position is held back and the partition re-read from the position, once,
  so no later offset can reach a user's record before an earlier one (which the replay rule would
  then skip for good).
- **No acknowledgement without a checkpoint** (:class:`pipeline.worker.checkpoint.CheckpointedRecords`):
  the agent reads with ``noack_take``; an event is acknowledged, and its offset committable
  (:class:`pipeline.worker.checkpoint_consumer.CheckpointConsumer`), only after the records that include
  it are acknowledged by Kafka in the changelog, so the committed offsets never pass the state; and a
  record is stored only after Kafka has acknowledged the outputs of the batches it includes.
  An output that cannot be published stops the worker: its events stay unacknowledged.
- **Only owned partitions**: events of a partition this worker no longer holds are dropped, and a
  rebalance first waits for the checkpoint (faust waits for every delivered event to be
  acknowledged before it gives partitions away).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Sequence

import faust
from faust.types import TP, EventT

from moodshift.pipeline import metrics
from moodshift.pipeline.worker.checkpoint import CheckpointedRecords
from moodshift.pipeline.worker.group_offsets import GroupOffsets
from moodshift.pipeline.worker.positions import Admission, InputPositions
from moodshift.pipeline.settings import Settings
from moodshift.pipeline.worker.users_table import UsersTable

log = logging.getLogger(__name__)

# A checkpoint hands the producer up to thousands of records; between every this many it lets the
# event loop run batches (a record takes a fraction of a millisecond of the loop).
WRITES_BETWEEN_YIELDS = 32


class WorkerState:
    """Users' records of one worker, the input positions, and the checkpoint that ties them together."""

    def __init__(self, app: faust.App, settings: Settings, users: UsersTable) -> None:
        self.app = app
        self.users = users
        self.records: CheckpointedRecords[EventT] = CheckpointedRecords(users)
        self.positions = InputPositions()
        self.offsets = GroupOffsets(settings, group_id=app.conf.id)
        # Held from loading users' records to staging them, and by the checkpoint while it takes the
        # changed records, so that no two of batch, idle close and checkpoint ever see a record half-way.
        self.lock = asyncio.Lock()
        # One checkpoint at a time (the timer's, a rebalance's): a second one acknowledging its events
        # while the first one's records were still unacknowledged would commit past them.
        self.checkpointing = asyncio.Lock()
        self._sought: dict[TP, int] = {}  # partitions sent back to their position, and which position
        # Set by or_stop(): from then on nothing is applied, staged or written. Timers and tasks run on
        # while the app stops, and a checkpoint of records built on top of a batch that was never
        # applied would make its events look like replays (lost).
        self.failed: BaseException | None = None
        self._stopping: set[asyncio.Future] = set()  # or_stop tasks started by a failed output

    # -- the gate ---------------------------------------------------------------------------------

    async def admit(self, batch: Sequence[EventT]) -> list[EventT]:
        """The events of ``batch`` to apply, in order; the rest are dropped without acknowledgement
        (duplicates of events applied already, events past a gap, events of partitions not owned)."""
        if self.failed is not None:
            self._release(batch)
            return []
        assigned = self.app.consumer.assignment()
        unknown = {event.message.tp for event in batch
                   if event.message.tp in assigned and not self.positions.known(event.message.tp)}
        if unknown:
            starts = await self.offsets.starting_offsets(unknown)
            for tp in unknown:
                self.positions.start(tp, starts[(tp.topic, tp.partition)])
        admitted, dropped = [], []
        for event in batch:
            tp, offset = event.message.tp, event.message.offset
            if tp not in assigned:
                dropped.append(event)
                continue
            verdict = self.positions.admit(tp, offset)
            if verdict is Admission.OUT_OF_ORDER:
                verdict = await self._out_of_order(tp, offset)
            if verdict is Admission.APPLY:
                self._sought.pop(tp, None)
                admitted.append(event)
            else:
                dropped.append(event)
        self._release(dropped)
        return admitted

    async def _out_of_order(self, tp: TP, offset: int) -> Admission:
        """An event past ``tp``'s position: apply it if the log has nothing in between, else send the
        partition back to its position."""
        expected = self.positions.next_offset(tp)
        first = await self.offsets.first_record_at_or_after(tp.topic, tp.partition, expected)
        if first is not None and first >= offset:
            metrics.INPUT_OFFSET_GAPS.inc(offset - expected)
            log.debug("%s has no records at offsets %d-%d; going on from %d", tp, expected, offset - 1, offset)
            self.positions.skip_to(tp, offset)
            return self.positions.admit(tp, offset)
        metrics.EVENTS_OUT_OF_ORDER.inc()
        if self._sought.get(tp) != expected:
            # Once per position: records fetched before the seek may still come after it; they are
            # dropped here (not acknowledged) and come again in order, since the seek re-reads
            # everything from the position and faust drops nothing of an input partition
            # (pipeline.worker.checkpoint_consumer.ReadOffsets). Seeking again for each of them
            # restarted the re-read each time. seek_wait runs in the consumer's own thread and loop.
            log.warning("%s: offset %d came before %d (records fetched before a seek); re-reading from %d",
                        tp, offset, expected, expected)
            self._sought[tp] = expected
            await self.app.consumer.seek_wait({tp: expected})
        return Admission.OUT_OF_ORDER

    def _release(self, events: Sequence[EventT]) -> None:
        """No longer in flight for faust, without acknowledging their offsets: events the gate dropped.

        faust's stop and each rebalance wait until every delivered event still in memory is
        acknowledged (``Consumer.wait_empty``), and the stream keeps a reference to the last event it
        handed over. A dropped duplicate that was its partition's last record held a graceful stop
        until the SIGKILL a minute later (make stress: the worker restarted after kill -9). Taken off
        faust's unacknowledged set, a message no longer holds that wait; its offset does not count for
        commits, which come from checkpoints only (pipeline.worker.checkpoint_consumer)."""
        unacknowledged = self.app.consumer.unacked
        for event in events:
            unacknowledged.discard(event.message)

    def on_rebalance(self) -> None:
        """Partitions moved: positions start again from the committed offsets (the checkpoint before
        the rebalance committed every event applied)."""
        self.positions.forget()
        self._sought.clear()

    # -- the checkpoint ---------------------------------------------------------------------------

    async def checkpoint(self) -> None:
        """Write every record changed since the last checkpoint, wait for Kafka to acknowledge them,
        then acknowledge the events they include and commit.

        Batches go on while the records are written: the state lock is held only to take the changed
        records, wait for the outputs of the batches they include (mostly acknowledged already) and
        store the records locally (a checkpoint of 10 s of records, megabytes, held every batch back
        for as long as the broker took). A later checkpoint's write of the same user comes after
        this one's (checkpoints run one at a time), and the producer keeps a partition's records in
        order."""
        started = time.perf_counter()
        async with self.checkpointing:
            async with self.lock:
                if self.failed is not None:
                    return
                changes, events, outputs = self.records.take()
                # A stored record's events are replays to a successor: their outputs must be in Kafka
                # first. Most are acknowledged by now; the last batch's may take a round trip.
                await asyncio.gather(*outputs)
                for key, value in changes.items():
                    self.users.put(key, value)
            sent = []
            for key, value in changes.items():
                sent.append(await self.users.write_changelog(key, value))
                if len(sent) % WRITES_BETWEEN_YIELDS == 0:
                    await asyncio.sleep(0)  # handing a record over rarely waits: let batches run
            if sent:
                await self.app.producer.flush()
                await asyncio.gather(*sent)  # a failed write raises: nothing is acknowledged
            offsets: dict[TP, int] = {}
            for event in events:
                event.ack()
                tp, offset = event.message.tp, event.message.offset
                offsets[tp] = max(offsets.get(tp, 0), offset + 1)
            self.app.consumer.checkpointed(offsets)
            if events:
                await self.app.consumer.commit()
        if changes:
            metrics.CHECKPOINTS.inc()
            metrics.CHANGELOG_BYTES.inc(sum(len(key) + len(value) for key, value in changes.items()))
            metrics.CHECKPOINT_SECONDS.observe(time.perf_counter() - started)
            metrics.USERS_IN_STATE.set(len(self.users))

    async def stop(self) -> None:
        await self.offsets.stop()

    def output_sent(self, ack: asyncio.Future) -> None:
        """Done-callback of every output handed to the producer: a failed one stops the worker now,
        not at the next checkpoint (which would find it too, an interval of batches later)."""
        if ack.cancelled() or ack.exception() is None or self.failed is not None:
            return
        stopping = asyncio.ensure_future(self.or_stop("publish", ack))
        self._stopping.add(stopping)
        stopping.add_done_callback(self._stopping.discard)

    async def or_stop(self, stage: str, step: Awaitable[None]) -> bool:
        """Await a step after the model step (publish, checkpoint); whether it succeeded. If it fails,
        outputs or records may be missing, so nothing may be committed: from then on nothing is
        applied or checkpointed, and the worker stops (exit code 1); its successor re-reads from the
        last checkpoint. The caller returns instead of raising: faust restarts an agent that raised,
        and a restart racing the stop left an actor that nothing cancelled (the stop hung)."""
        try:
            await step
            return True
        except Exception as error:
            if self.failed is not None:  # stopping already (a failed output fails the checkpoint too)
                return False
            self.failed = error
            metrics.PROCESSING_ERRORS.labels(stage=stage).inc()
            log.critical("%s failed after the model step; stopping the worker so that nothing unwritten is "
                         "committed (the next start re-reads from the last checkpoint): %r", stage, error)
            await self.app.crash(error)
            return False
