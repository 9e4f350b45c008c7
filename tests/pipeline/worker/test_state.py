"""The worker's state rules: the offset-order gate, checkpointed records, and input with offset gaps."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka.structs import TopicPartition
from faust.types import TP
from kafka import KafkaProducer

from moodshift.connectors import topics
from moodshift.pipeline.worker.app import build_app
from moodshift.pipeline.worker.checkpoint import CheckpointedRecords
from moodshift.pipeline.worker.checkpoint_consumer import CheckpointConsumer, ReadOffsets
from moodshift.pipeline.worker.positions import Admission, InputPositions
from moodshift.pipeline.stream.records import UserRecord
from moodshift.pipeline.settings import Settings
from moodshift.pipeline.worker.state import WorkerState
from tests.reliability.test_recovery import (DAILY, Outputs, assert_uninterrupted, daily_stream, start_worker,
                                            wait_for_everything, worker_settings)


def test_the_gate_applies_each_offset_once_and_in_order() -> None:
    positions = InputPositions()
    positions.start("posts/1", 5)
    delivered = [5, 6, 9, 7, 5, 8, 9, 10]  # 9 came early (fetched before a seek); 5 again (a replay)
    verdicts = [positions.admit("posts/1", offset) for offset in delivered]
    applied = [offset for offset, verdict in zip(delivered, verdicts) if verdict is Admission.APPLY]
    assert applied == [5, 6, 7, 8, 9, 10]
    assert verdicts[2] is Admission.OUT_OF_ORDER and verdicts[4] is Admission.DUPLICATE


def test_partitions_are_independent_and_forgotten_on_rebalance() -> None:
    positions = InputPositions()
    positions.start("posts/0", 0)
    positions.start("videos/0", 100)
    assert positions.admit("videos/0", 100) is Admission.APPLY
    assert positions.admit("posts/0", 0) is Admission.APPLY
    positions.forget(["posts/0"])
    assert not positions.known("posts/0") and positions.known("videos/0")
    positions.forget()
    assert not positions.known("videos/0")


def test_skip_to_never_moves_back() -> None:
    positions = InputPositions()
    positions.start("posts/0", 10)
    positions.skip_to("posts/0", 4)
    assert positions.next_offset("posts/0") == 10


def test_a_checkpoint_writes_each_changed_user_once_with_every_event_it_includes() -> None:
    table: dict[bytes, bytes] = {}
    records: CheckpointedRecords[str] = CheckpointedRecords(table)
    for batch in range(5):  # five batches change the same two users
        records.stage({"a": UserRecord(applied={"posts/0": batch}), "b": UserRecord(model=b"\x01" * batch)},
                      events=[f"event {batch}"])
    assert records.pending_users == 2 and table == {}
    changes, events, _ = records.take()
    assert sorted(changes) == [b"a", b"b"] and events == [f"event {i}" for i in range(5)]
    assert UserRecord.from_bytes(changes[b"a"]).applied == {"posts/0": 4}  # the newest record, once
    table.update(changes)
    assert records.get("b").model == b"\x01" * 4
    assert records.take() == ({}, [], [])


class _Log:
    """A partition's records at every offset from ``start``, as the broker answers the gate."""

    def __init__(self, start: int) -> None:
        self.start = start

    async def starting_offsets(self, partitions: set) -> dict:
        return {(tp.topic, tp.partition): self.start for tp in partitions}

    async def first_record_at_or_after(self, topic: str, partition: int, offset: int) -> int:
        return offset  # no gap: every offset holds a record


class _Message:
    """A delivered record: each delivery its own object, as faust's messages are."""

    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.offset = tp, offset


def event(tp: TP, offset: int) -> SimpleNamespace:
    return SimpleNamespace(message=_Message(tp, offset))


def test_the_gate_seeks_once_and_applies_the_re_read_whatever_stale_records_come_with_it() -> None:
    """A restarted worker got offset 149 while its position was 104 (a fetch from before the seek to
    the committed offsets). The gate seeks back to 104 once; the stale records still in flight after
    the seek (150, 151) are dropped, and the re-read, in the same batch or a later one, applies in order.
    Seeking again for each stale record restarted the re-read every time (make stress: a 3.5-minute
    stall)."""
    tp = TP("t.posts", 0)
    seeks: list[dict] = []

    async def seek_wait(partitions: dict) -> None:
        seeks.append(dict(partitions))

    state = gate(tp, start=104, seek_wait=seek_wait)

    async def deliver() -> list[int]:
        applied = await state.admit([event(tp, offset) for offset in (149, 150)])
        applied += await state.admit([event(tp, offset) for offset in [151, *range(104, 160)]])
        return [e.message.offset for e in applied]

    assert asyncio.run(deliver()) == list(range(104, 160))
    assert seeks == [{tp: 104}]


def gate(tp: TP, start: int, seek_wait=None) -> WorkerState:
    """A worker's state owning ``tp``, whose committed offset is ``start``, with a stand-in for faust's
    consumer: its assignment, its seek and its set of delivered events not yet acknowledged."""
    app = SimpleNamespace(conf=SimpleNamespace(id="t.worker"),
                          consumer=SimpleNamespace(assignment=lambda: {tp}, seek_wait=seek_wait, unacked=set()))
    state = WorkerState(app, Settings(), users={})
    state.offsets = _Log(start=start)
    return state


def test_events_the_gate_drops_are_no_longer_in_flight_for_faust() -> None:
    """faust's stop and its rebalances wait for every delivered event to be acknowledged. A duplicate
    the gate dropped must not hold them (make stress: a restarted worker's last delivered event was a
    duplicate, and its graceful stop hung until SIGKILL); applied events stay in flight until the
    checkpoint acknowledges them."""
    tp = TP("t.posts", 0)
    state = gate(tp, start=10)
    delivered = [event(tp, offset) for offset in (10, 11, 10, 11)]  # the last two fetched again after a seek
    in_flight = state.app.consumer.unacked
    in_flight.update(e.message for e in delivered)
    applied = asyncio.run(state.admit(delivered))
    assert applied == delivered[:2]
    assert in_flight == {e.message for e in applied}


def test_events_of_a_partition_given_away_are_no_longer_in_flight_for_faust() -> None:
    """Handed over before a rebalance completes, they would hold the next rebalance's wait the same way."""
    mine, moved = TP("t.posts", 0), TP("t.posts", 1)
    state = gate(mine, start=0)
    delivered = [event(mine, 0), event(moved, 7)]
    in_flight = state.app.consumer.unacked
    in_flight.update(e.message for e in delivered)
    assert asyncio.run(state.admit(delivered)) == delivered[:1]
    assert in_flight == {delivered[0].message}


def test_faust_drops_nothing_of_an_input_partition_below_its_read_offset() -> None:
    """What makes a single seek enough: faust's read offset, raised by a stale record after the seek,
    no longer hides the re-read of an input partition; a changelog's keeps faust's rule."""
    offsets = ReadOffsets(lambda topic: topic.endswith("-changelog"))
    offsets[TP("t.posts", 0)] = 151  # a stale record handed over after the seek to 104
    offsets[TP("t.worker-users-changelog", 0)] = 9
    assert offsets[TP("t.posts", 0)] is None and offsets[TP("t.worker-users-changelog", 0)] == 9


class _ChangelogWrites(dict):
    """A users table whose changelog writes Kafka acknowledges when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[bytes, asyncio.Future]] = []

    def put(self, key: bytes, value: bytes) -> None:
        self[key] = value

    async def write_changelog(self, key: bytes, value: bytes) -> asyncio.Future:
        self.writes.append((key, asyncio.get_running_loop().create_future()))
        return self.writes[-1][1]


def test_batches_go_on_while_a_checkpoint_waits_for_kafka_and_checkpoints_run_one_at_a_time() -> None:
    async def scenario() -> list[str]:
        users, done = _ChangelogWrites(), []

        async def flush() -> None:
            pass

        async def commit() -> None:
            done.append("commit")

        app = SimpleNamespace(conf=SimpleNamespace(id="w"), producer=SimpleNamespace(flush=flush),
                              consumer=SimpleNamespace(checkpointed=lambda offsets: done.append(offsets), commit=commit))
        state = WorkerState(app, Settings(), users)

        def event(offset: int) -> SimpleNamespace:
            return SimpleNamespace(ack=lambda: done.append(f"ack {offset}"),
                                   message=SimpleNamespace(tp=TP("posts", 0), offset=offset))

        state.records.stage({"u1": UserRecord(applied={"posts/0": 3})}, [event(3)])
        first = asyncio.create_task(state.checkpoint())
        while not users.writes:
            await asyncio.sleep(0)
        # a batch while the first checkpoint's record is unacknowledged: it must not wait for Kafka
        await asyncio.wait_for(state.lock.acquire(), timeout=5)
        state.records.stage({"u1": UserRecord(applied={"posts/0": 4})}, [event(4)])
        state.lock.release()
        second = asyncio.create_task(state.checkpoint())
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(users.writes) == 1 and done == []  # the second waits: it would commit past the first
        users.writes[0][1].set_result(None)
        while len(users.writes) < 2:
            await asyncio.sleep(0)
        assert done == ["ack 3", {TP("posts", 0): 4}, "commit"]
        users.writes[1][1].set_result(None)
        await asyncio.gather(first, second)
        assert UserRecord.from_bytes(users[b"u1"]).applied == {"posts/0": 4}
        return done[3:]

    assert asyncio.run(scenario()) == ["ack 4", {TP("posts", 0): 5}, "commit"]


def test_a_record_is_stored_and_written_only_after_its_batch_outputs_are_acknowledged() -> None:
    """A batch does not wait for its outputs' acknowledgements; the checkpoint does, before its
    records reach the table or the changelog: a successor skips the events a stored record includes."""
    async def scenario() -> None:
        users = _ChangelogWrites()

        async def flush() -> None:
            pass

        async def commit() -> None:
            pass

        app = SimpleNamespace(conf=SimpleNamespace(id="w"), producer=SimpleNamespace(flush=flush),
                              consumer=SimpleNamespace(checkpointed=lambda offsets: None, commit=commit))
        state = WorkerState(app, Settings(), users)
        output = asyncio.get_running_loop().create_future()
        state.records.stage({"u1": UserRecord(applied={"posts/0": 3})}, [], [output])
        checkpoint = asyncio.create_task(state.checkpoint())
        for _ in range(20):
            await asyncio.sleep(0)
        assert users == {} and users.writes == []
        output.set_result(None)
        while not users.writes:
            await asyncio.sleep(0)
        assert list(users) == [b"u1"]
        users.writes[0][1].set_result(None)
        await checkpoint

    asyncio.run(scenario())


def test_batches_run_while_a_checkpoint_hands_its_records_to_the_producer() -> None:
    """Handing thousands of records over (a fraction of a millisecond each) must not hold the event
    loop: a batch waiting for the state lock gets it before the checkpoint has handed over a tenth."""
    async def scenario() -> tuple[int, int]:
        users = _ChangelogWrites()

        async def flush() -> None:
            for _, written in users.writes:
                written.done() or written.set_result(None)

        async def commit() -> None:
            pass

        app = SimpleNamespace(conf=SimpleNamespace(id="w"), producer=SimpleNamespace(flush=flush),
                              consumer=SimpleNamespace(checkpointed=lambda offsets: None, commit=commit))
        state = WorkerState(app, Settings(), users)
        state.records.stage({f"u{n}": UserRecord(applied={"posts/0": n}) for n in range(2000)}, [])
        checkpoint = asyncio.create_task(state.checkpoint())
        while not users.writes:
            await asyncio.sleep(0)
        async with state.lock:  # a batch
            handed_over_when_the_batch_ran = len(users.writes)
        await checkpoint
        return handed_over_when_the_batch_ran, len(users)

    handed_over, stored = asyncio.run(scenario())
    assert stored == 2000 and handed_over < 200


class _Consumer(CheckpointConsumer):
    """The re-seek rule alone: faust's own seek to committed offsets and the consumer thread replaced
    by records of what was asked."""

    def __init__(self, recovery: SimpleNamespace, assigned: set, committed: dict | None = None) -> None:
        # no faust app, no thread
        changelogs = {tp.topic for tp in recovery.active_tps}
        self.app = SimpleNamespace(tables=SimpleNamespace(recovery=recovery, changelog_topics=changelogs))
        self.assigned, self.calls, self.committed = assigned, [], committed or {}
        self._read_offset, self._committed_offset = {}, {}  # faust's perform_seek updates both

    def __repr__(self) -> str:
        return "_Consumer()"

    def assignment(self) -> set:
        return self.assigned

    async def seek_to_committed(self) -> dict:
        self.calls.append("committed")
        return dict(self.committed)

    @property
    def _thread(self) -> SimpleNamespace:  # faust's consumer thread, where aiokafka's consumer lives
        async def seek_to_beginning(*partitions: TopicPartition) -> None:
            if not all(isinstance(tp, TopicPartition) for tp in partitions):  # aiokafka's own check
                raise TypeError("partitions must be TopicPartition instances")
            self.calls.append(("beginning", list(partitions)))
        return SimpleNamespace(seek_to_beginning=seek_to_beginning)

    async def seek_wait(self, partitions: dict) -> None:
        self.calls.append(dict(partitions))


def test_a_fetch_dropped_during_recovery_is_read_again_from_the_last_record_the_table_received() -> None:
    """faust drops a fetch that comes back while its flow is stopped and seeks to the committed
    offsets, which a changelog partition has none of; the consumer sends the partitions in recovery
    back to the table's last record (-1 or None: nothing received yet, so offset 0)."""
    changelog = [TP("w-users-changelog", 0), TP("w-users-changelog", 1), TP("w-users-changelog", 2)]
    recovery = SimpleNamespace(in_recovery=True, active_tps=set(changelog),
                               active_offsets={changelog[0]: 41, changelog[1]: -1, changelog[2]: 7})
    consumer = _Consumer(recovery, assigned={changelog[0], changelog[1], TP("posts", 0)}, committed={TP("posts", 0): 12})
    asyncio.run(consumer.perform_seek())
    assert consumer.calls == ["committed", {changelog[0]: 41, changelog[1]: 0}]  # [2]: not assigned here

    recovery.in_recovery = False  # faust seeks after its recovery too: the streams' partitions only
    consumer.calls.clear()
    asyncio.run(consumer.perform_seek())
    assert consumer.calls == ["committed"]


def test_a_fetch_dropped_before_anything_was_committed_is_read_again_from_the_beginning() -> None:
    """aiokafka seeks back only partitions with a committed offset above 0; a fresh group's input
    partition stayed past the dropped records, which no one processed until newer ones came."""
    recovery = SimpleNamespace(in_recovery=False, active_tps={TP("w-users-changelog", 0)}, active_offsets={})
    fresh, started, empty = TP("posts", 0), TP("posts", 1), TP("videos", 0)
    consumer = _Consumer(recovery, assigned={fresh, started, empty, TP("w-users-changelog", 0)},
                         committed={started: 57, empty: 0})
    asyncio.run(consumer.perform_seek())
    assert consumer.calls == ["committed", ("beginning", [fresh, empty])]


def test_a_crashed_consumer_commits_nothing() -> None:
    """A failed publish crashes the worker; faust's consumer thread shuts down by itself on the
    crash, yet faust's stop commits once more, and so does a checkpoint the crash overtook. Sent to
    the thread, that commit failed ("Event loop is closed") or was never answered (the stop hung
    until SIGKILL). The consumer commits nothing once crashed; the successor replays from the last
    commit."""
    posts = TP("posts", 0)
    consumer = _Consumer(SimpleNamespace(in_recovery=False, active_tps=set(), active_offsets={}), assigned={posts})
    consumer._checkpointed, consumer._crashed = {}, asyncio.Event()
    consumer.checkpointed({posts: 12})  # a checkpoint's records are in the changelog
    consumer._crashed.set()
    assert asyncio.run(consumer.commit()) is False
    assert consumer.calls == []


def test_resuming_a_flowing_stream_keeps_what_it_fetched(tmp_path: Path) -> None:
    """faust's recovery resumes the flow when it starts reading the changelogs and again after it has
    sought the input partitions (``Recovery.on_recovery_completed``); records fetched in between were
    cleared from the stream's queue, and the worker sat idle if they were a partition's last. Only a
    resume after a suspension (a rebalance) clears the queues now."""
    app = build_app(Settings(state_dir=tmp_path))
    queue = app.FlowControlQueue(maxsize=16, clear_on_resume=True)  # as faust's streams and channels make them
    app.flow_control.resume()  # recovery starts reading the changelogs
    queue.put_nowait("a post fetched while the recovery sought the input partitions")
    app.flow_control.resume()  # recovery complete
    assert queue.qsize() == 1

    app.flow_control.suspend()  # a rebalance: faust stops the flow and clears the queues itself
    queue.put_nowait("a record that was on its way when the flow stopped")
    app.flow_control.resume()
    assert queue.qsize() == 0


def test_a_producer_batch_holds_many_users_records(tmp_path: Path) -> None:
    """A checkpoint writes one record per changed user. In faust's default 16 KB batch one record of
    the method's shapes filled a batch, the producer buffer drained one record per partition per
    request, and faust held input back while it held over 100 (docs/benchmarks.md)."""
    from benchmarks.model_bench import state_memory
    from moodshift.models.config import ModelConfig

    record_bytes = state_memory(ModelConfig(), users=1)["worker_record_bytes"]
    assert record_bytes > 16_384 // 2  # what the old default held one of: the premise still holds
    app = build_app(Settings(state_dir=tmp_path))
    assert app.conf.producer_max_batch_size >= 32 * record_bytes


@pytest.mark.kafka
def test_input_from_a_transactional_producer_loses_nothing(kafka_settings: Settings, tmp_path: Path) -> None:
    """A customer's transactional producer leaves offsets without records (commit markers) in the
    input partitions; the gate must ask the broker, pass over them, and apply every post."""
    settings = worker_settings(kafka_settings, tmp_path).replace(**DAILY)
    posts, expected_steps, expected_changes = daily_stream(settings, users=6, days=12, seed=4)
    producer = KafkaProducer(**settings.kafka_python_config(), transactional_id=f"{settings.topic_prefix}customer")
    producer.init_transactions()
    for post in posts:  # one transaction per post: a marker after every record
        producer.begin_transaction()
        producer.send(settings.topic(topics.POSTS), key=post.user_id.encode(), value=post.to_json_bytes())
        producer.commit_transaction()
    producer.close()
    worker = start_worker(settings, tmp_path / "worker.log")
    outputs = Outputs(settings)
    try:
        # Steps and change points alike: one consumer reads both topics, and may read the steps'
        # topic to its end before the change points published ahead of them (make test, once).
        wait_for_everything(outputs, expected_steps, expected_changes, [worker])
        metrics = worker.get("/metrics").decode()
        stacks = worker.stacks(chars=10**6)
    finally:
        worker.stop()
        outputs.close()
    assert_uninterrupted(outputs, expected_steps, expected_changes)
    gaps = [line for line in metrics.splitlines() if line.startswith("moodshift_input_offset_gaps_total ")]
    assert gaps and float(gaps[0].split()[1]) > 0, "the markers were never met: nothing was tested"
    # /debug/stacks (for a worker that stalls): the agent's task and the threads are there.
    assert "in process_events" in stacks and "thread MainThread:" in stacks
