"""Crashes, broker restarts and rebalances in the middle of a stream lose nothing.

Each test feeds the same paced stream of posts (with weather and market context) into the real
broker while a `moodshift worker` runs, disrupts it halfway, and then requires the outputs,
deduplicated by id (change points by ``change_id``, per-step emotions by user and window end), to
equal what the plain-Python runtime computes over the stream without interruption: same steps, same
emotions, same change points. A replayed event counted twice in a window, a lost record or a
lost output would each change that.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.admin import ConfigResource

from moodshift.connectors import topics
from moodshift.connectors.producer import EventProducer
from moodshift.connectors.schemas import Post
from moodshift.connectors.topics import ensure_topics
from moodshift.pipeline.local.broker import LocalBroker
from moodshift.pipeline.local.net import free_port
from moodshift.pipeline.stream.records import UserRecord
from moodshift.pipeline.settings import Settings
from moodshift.pipeline.worker.runtime import Outputs as RuntimeOutputs, RawRecord, WorkerRuntime
from tests.kafka_topics import create_topic
from tests.pipeline.worker.test_worker_kafka import WORDS, make_records, tiny_checkpoint
from tests.pipeline.worker.worker_process import WorkerProcess

pytestmark = pytest.mark.kafka

START = datetime(2016, 6, 1, tzinfo=timezone.utc)
USERS = [f"user-{i}" for i in range(6)]
POSTS_PER_USER = 50
FEED_SECONDS = 16.0
# The worker settings that differ from the defaults; a detector that reports every change of the
# most likely emotion, so that the tiny random model yields plenty of change points to compare.
WORKER = dict(window_size_seconds=3600, window_slide_seconds=1800, allowed_lateness_seconds=0,
              emit_step_emotions=True, idle_close_seconds=0, context_location="clemson",
              context_symbol="^GSPC", batch_max_wait_ms=100, worker_session_timeout_seconds=10,
              detector_enter_threshold=0.0, detector_margin=0.0, detector_min_dwell=1,
              retention_hours=24 * 365 * 30, checkpoint_interval_seconds=1.0)


@dataclass
class Stream:
    """The stream's posts and what an uninterrupted run must publish for them."""

    settings: Settings
    posts: list[Post]
    expected_steps: dict[tuple[str, str], dict]
    expected_changes: set[str]

    def worker(self, log_path: Path, **changes: object) -> WorkerProcess:
        return start_worker(self.settings, log_path, **changes)


def start_worker(settings: Settings, log_path: Path, **changes: object) -> WorkerProcess:
    """A worker with the test's settings (``WORKER``) and a web port of its own."""
    settings = settings.replace(worker_web_port=free_port(), **changes)
    return WorkerProcess(settings, log_path, overrides=("model_checkpoint", "worker_web_port",
                                                        "processing_guarantee", "table_store", *WORKER))


def worker_settings(settings: Settings, tmp_path: Path) -> Settings:
    """``WORKER`` and a tiny model; the topics exist."""
    settings = settings.replace(model_checkpoint=tiny_checkpoint(tmp_path / "model.pt"), **WORKER)
    ensure_topics(settings, topics.ALL_TOPICS)
    return settings


def send(settings: Settings, posts: list[Post]) -> list:
    """The weather and market context, then ``posts``; returns the context records."""
    context, _ = make_records()
    with EventProducer(settings, source="test") as producer:
        for topic, record in context:
            producer.send_event(topic, record)
        for post in posts:
            producer.send_event(topics.POSTS, post)
    return context


def prepare(settings: Settings, tmp_path: Path) -> Stream:
    settings = worker_settings(settings, tmp_path)
    rng = np.random.default_rng(11)
    posts = [Post(event_id=f"{user}-{i}", user_id=user, event_time=START + timedelta(minutes=i * 37 + u),
                  text=" ".join(rng.choice(WORDS, 5)), source="test")
             for i in range(POSTS_PER_USER) for u, user in enumerate(USERS)]
    context = send(settings, [])  # the posts go later, paced, by a Feeder
    runtime = WorkerRuntime.from_settings(settings)
    for topic, record in context:
        runtime.add_context(settings.topic(topic), record.to_json_bytes())
    events, _ = runtime.decode([(settings.topic(topics.POSTS), p.user_id.encode(), p.to_json_bytes()) for p in posts])
    outputs = runtime.process(events, {}, 0)
    steps = {step_key(json.loads(value)): json.loads(value) for _, value in outputs.steps}
    changes = {json.loads(value)["change_id"] for _, value in outputs.change_points}
    assert len(steps) > 200 and len(changes) >= 5
    return Stream(settings, posts, steps, changes)


def step_key(step: dict) -> tuple[str, str]:
    return step["user_id"], step["window_end"]


class Feeder(threading.Thread):
    """Sends the posts evenly over ``seconds`` through a connector's producer, then flushes.

    With ``hold_at``, it stops after that fraction of the posts until ``resume`` is set, so that a
    disruption waiting for something slow (a worker starting on a loaded machine) still comes
    mid-stream."""

    def __init__(self, settings: Settings, posts: list[Post], seconds: float, hold_at: float | None = None) -> None:
        super().__init__(daemon=True)
        self.settings, self.posts, self.seconds = settings, posts, seconds
        self.hold_index = len(posts) if hold_at is None else int(len(posts) * hold_at)
        self.resume = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None
        self.landed_mid_stream: bool | None = None  # set by disruption_lands()

    def disruption_lands(self) -> None:
        """Called by a disruption the moment it strikes (a kill, a stop, a broker going down): the
        scenario tests nothing unless posts were still to come then."""
        self.landed_mid_stream = self.is_alive() and self.sent < len(self.posts)

    def run(self) -> None:
        try:
            with EventProducer(self.settings, source="test") as producer:
                started = time.monotonic()
                for i, post in enumerate(self.posts):
                    if i == self.hold_index:
                        held = time.monotonic()
                        assert self.resume.wait(timeout=300), "never resumed"
                        started += time.monotonic() - held
                    time.sleep(max(0.0, started + i * self.seconds / len(self.posts) - time.monotonic()))
                    producer.send_event(topics.POSTS, post)
                    self.sent += 1
                producer.flush()
        except BaseException as error:  # noqa: BLE001 - the test reports it
            self.error = error


@dataclass
class Outputs:
    """Everything the workers published so far, deduplicated the way a consumer would."""

    settings: Settings
    steps: dict[tuple[str, str], dict] = field(default_factory=dict)
    changes: set[str] = field(default_factory=set)
    duplicates: int = 0

    def __post_init__(self) -> None:
        self.consumer = KafkaConsumer(self.settings.topic(topics.EMOTION_STEPS),
                                      self.settings.topic(topics.EMOTION_CHANGES), auto_offset_reset="earliest",
                                      **self.settings.kafka_python_config())

    def poll(self) -> None:
        for records in self.consumer.poll(timeout_ms=500).values():
            for record in records:
                document = json.loads(record.value)
                if "change_id" in document:
                    self.duplicates += document["change_id"] in self.changes
                    self.changes.add(document["change_id"])
                else:
                    self.duplicates += step_key(document) in self.steps
                    self.steps[step_key(document)] = document

    def wait_for(self, done: Callable[[], bool], timeout: float, workers: list[WorkerProcess],
                 missing: Callable[[], str] = lambda: "") -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out; {missing()}\n" + "\n".join(
                f"{w.log_path.name}:\n{w.log_tail()}\n{w.metrics_summary()}\n{w.stacks()}" for w in workers)
            self.poll()

    def wait_sent(self, feeder: Feeder, fraction: float, workers: list[WorkerProcess]) -> None:
        """Until the feeder has sent ``fraction`` of the stream (reading outputs meanwhile)."""
        self.wait_for(lambda: feeder.sent >= len(feeder.posts) * fraction, 120, workers)

    def close(self) -> None:
        self.consumer.close()


def missing_outputs(stream: Stream, outputs: Outputs) -> str:
    """Which expected steps (user, window end) and change points have not come, for a timeout."""
    steps = sorted(stream.expected_steps.keys() - outputs.steps.keys())
    changes = stream.expected_changes - outputs.changes
    extra = sorted(outputs.steps.keys() - stream.expected_steps.keys())
    return (f"{len(steps)} of {len(stream.expected_steps)} steps missing {steps[:12]}; {len(changes)} of "
            f"{len(stream.expected_changes)} change points missing; {len(extra)} unexpected steps {extra[:6]}")


def run_with_disruption(stream: Stream, disrupt: Callable[[Feeder, Outputs], list[WorkerProcess]],
                        first: WorkerProcess, feed_seconds: float = 16, timeout: float = 240,
                        hold_at: float | None = None) -> Outputs:
    """Feed the stream while ``disrupt`` runs (it returns the workers it started), then wait for the
    outputs of every post."""
    feeder = Feeder(stream.settings, stream.posts, feed_seconds, hold_at)
    outputs = Outputs(stream.settings)
    workers = [first]
    try:
        first.wait_ready()
        feeder.start()
        workers += disrupt(feeder, outputs)
        assert feeder.landed_mid_stream is not None, "the disruption did not say when it struck"
        assert feeder.landed_mid_stream, "the disruption came after the stream had ended"
        outputs.wait_for(lambda: outputs.steps.keys() >= stream.expected_steps.keys()
                         and outputs.changes >= stream.expected_changes, timeout, workers,
                         missing=lambda: missing_outputs(stream, outputs))
        feeder.join(timeout=60)
        assert feeder.error is None and feeder.sent == len(stream.posts)
        time.sleep(2)  # anything extra (a step for an event counted twice) would show up by now
        outputs.poll()
    finally:
        for worker in workers:
            worker.stop()
        outputs.close()
    assert outputs.steps.keys() == stream.expected_steps.keys()
    differing = sorted((key, float(np.abs(np.subtract(step["emotion"], stream.expected_steps[key]["emotion"])).max()))
                       for key, step in outputs.steps.items()
                       if not np.allclose(step["emotion"], stream.expected_steps[key]["emotion"], atol=1e-5, rtol=0))
    assert not differing, f"{len(differing)} steps differ from the uninterrupted run's: {differing[:20]}"
    assert outputs.changes == stream.expected_changes
    assert_stopped_gracefully(workers)
    return outputs


def assert_stopped_gracefully(workers: list[WorkerProcess]) -> None:
    """Each worker that got SIGTERM ended by itself (a hang would stall a rolling deploy, and a
    worker leaving the group would become a crash)."""
    hung = [worker for worker in workers if worker.stop_timed_out]
    assert not hung, "\n".join(f"{w.log_path.name} ignored SIGTERM until SIGKILL:\n{w.log_tail()}" for w in hung)


@pytest.mark.stress
def test_a_killed_worker_restarts_from_the_changelog_and_loses_nothing(kafka_settings: Settings,
                                                                       tmp_path: Path) -> None:
    stream = prepare(kafka_settings, tmp_path)
    first = stream.worker(tmp_path / "worker-1.log")

    def crash_and_restart(feeder: Feeder, outputs: Outputs) -> list[WorkerProcess]:
        # Not earlier: the changelog lags the outputs by a few seconds, and a crash before its first
        # write and the first offset commit would only replay the stream from scratch.
        outputs.wait_sent(feeder, 2 / 3, [first])
        feeder.disruption_lands()
        first.kill()  # SIGKILL: no commit, no flush
        return [stream.worker(tmp_path / "worker-2.log")]

    run_with_disruption(stream, crash_and_restart, first)


def test_a_worker_stopped_mid_batch_commits_only_what_it_stored(kafka_settings: Settings, tmp_path: Path) -> None:
    """A graceful stop (SIGTERM) while a backlog is being processed, so the stop lands in a batch.
    Only a checkpoint acknowledges events, after their records are in the changelog, and faust's stop
    waits for every delivered event to be acknowledged (``stream_wait_empty``), so the checkpoint
    must keep running while the worker stops. This pins that order: every input record below the
    group's committed offset must be applied in its user's stored record (the table's changelog)."""
    settings = worker_settings(kafka_settings, tmp_path)
    rng = np.random.default_rng(5)
    send(settings, [Post(event_id=f"backlog-{u}-{i}", user_id=f"backlog-{u}", source="test",
                         event_time=START + timedelta(minutes=i * 37 + u % 30), text=" ".join(rng.choice(WORDS, 5)))
                    for i in range(20) for u in range(300)])
    worker = start_worker(settings, tmp_path / "worker.log")
    outputs = Outputs(settings)
    try:
        worker.wait_ready()
        outputs.wait_for(lambda: len(outputs.steps) > 100, 120, [worker])
    finally:
        worker.stop()
        outputs.close()
    assert worker.process.returncode == 0, worker.log_tail()

    runtime = WorkerRuntime.from_settings(settings)
    stored = latest_records(settings, f"{settings.topic('worker')}-users-changelog")
    committed = committed_offsets(settings, group=settings.topic("worker"))
    unstored = []
    for record in read_topic(settings, settings.topic(topics.POSTS)):
        if record.offset < committed.get(record.partition, 0):
            applied = stored[record.key].applied if record.key in stored else {}
            if applied.get(runtime.source_of(record.topic, record.partition), -1) < record.offset:
                unstored.append((record.partition, record.offset, record.key))
    assert sum(committed.values()) > 0, "the stop came before any commit: nothing was checked"
    assert not unstored, f"{len(unstored)} committed records were never stored, e.g. {unstored[:5]}"


def test_a_stale_record_in_the_changelog_does_not_win_at_recovery(kafka_settings: Settings, tmp_path: Path) -> None:
    """A worker that loses a user's partition while a batch is in the model still stores that batch,
    and faust does not fence table writes: the stale record can land after the new owner's newer one.
    Here the changelog is written that way by hand (the record after 10 posts, then the one after 6)
    and the group's offsets committed after the 10th post, as the new owner left them. A worker that
    recovers from it must go on from the newer record (``pipeline.worker.users_table``)."""
    settings = worker_settings(kafka_settings, tmp_path)
    changelog = f"{settings.topic('worker')}-users-changelog"  # faust's name for the users table's
    create_topic(settings, changelog, settings.partitions, {"cleanup.policy": "compact"})
    rng = np.random.default_rng(3)
    context = send(settings, [Post(event_id=f"solo-{i}", user_id="solo", source="test", text=" ".join(rng.choice(WORDS, 5)),
                                   event_time=START + timedelta(minutes=37 * i)) for i in range(14)])
    runtime = WorkerRuntime.from_settings(settings)
    for topic, record in context:
        runtime.add_context(settings.topic(topic), record.to_json_bytes())
    posts = sorted(read_topic(settings, settings.topic(topics.POSTS)), key=lambda record: record.offset)
    events, _ = runtime.decode([RawRecord(r.topic, r.key, r.value, r.timestamp, r.partition, r.offset) for r in posts])

    def run(batch: list, record: bytes | None) -> RuntimeOutputs:
        return runtime.process(batch, {"solo": None if record is None else UserRecord.from_bytes(record)}, 0)

    after_6 = run(events[:6], None).records["solo"].to_bytes()
    after_10 = run(events[6:10], after_6).records["solo"].to_bytes()
    expected = {step_key(json.loads(v)): json.loads(v)["emotion"] for _, v in run(events[10:], after_10).steps}
    from_stale = {step_key(json.loads(v)): json.loads(v)["emotion"] for _, v in run(events[10:], after_6).steps}
    assert expected and any(not np.allclose(expected[k], from_stale.get(k, [0.0] * len(expected[k])), atol=1e-5)
                            for k in expected), "the stale record must make a visible difference"

    with KafkaProducer(**settings.kafka_python_config()) as producer:
        for record in (after_10, after_6):  # the stale write lands last
            producer.send(changelog, key=b"solo", value=record).get(timeout=30)
    partition = TopicPartition(settings.topic(topics.POSTS), posts[0].partition)
    committer = KafkaConsumer(group_id=settings.topic("worker"), enable_auto_commit=False,
                              **settings.kafka_python_config())
    try:
        committer.commit({partition: OffsetAndMetadata(posts[10].offset, "", -1)})
    finally:
        committer.close()

    worker = start_worker(settings, tmp_path / "worker.log")
    outputs = Outputs(settings)
    try:
        # Until every expected step is out, or one that only a stale record would make.
        outputs.wait_for(lambda: outputs.steps.keys() >= expected.keys() or outputs.steps.keys() - expected.keys(),
                         180, [worker])
        ignored = worker.get("/metrics")
    finally:
        worker.stop()
        outputs.close()
    assert outputs.steps.keys() == expected.keys(), "only the posts after the committed offset make steps"
    for key, emotion in expected.items():
        np.testing.assert_allclose(outputs.steps[key]["emotion"], emotion, atol=1e-5)
    assert b"moodshift_stale_records_ignored_total 1.0" in ignored


def read_topic(settings: Settings, topic: str) -> list:
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=3000,
                             **settings.kafka_python_config())
    try:
        return list(consumer)
    finally:
        consumer.close()


def latest_records(settings: Settings, changelog: str) -> dict[bytes, UserRecord]:
    """The users' records as the next owner would recover them: the last value per key."""
    return {record.key: UserRecord.from_bytes(record.value) for record in read_topic(settings, changelog)}


def committed_offsets(settings: Settings, group: str) -> dict[int, int]:
    """The group's committed offset per partition of the posts topic."""
    admin = KafkaAdminClient(**settings.kafka_python_config())
    try:
        offsets = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == settings.topic(topics.POSTS)}


@pytest.mark.parametrize("store", [pytest.param("memory", marks=pytest.mark.stress), "rocksdb"])
def test_a_second_worker_joins_and_leaves_mid_stream(kafka_settings: Settings, tmp_path: Path, store: str) -> None:
    """Partitions move to the newcomer and back; each move hands users' state over via the changelog
    (with RocksDB, the first worker's local store is behind when its partitions come back)."""
    stream = prepare(kafka_settings, tmp_path)
    stream.settings = stream.settings.replace(table_store=store)
    first = stream.worker(tmp_path / "worker-1.log")

    def join_then_leave(feeder: Feeder, outputs: Outputs) -> list[WorkerProcess]:
        outputs.wait_sent(feeder, 1 / 5, [first])
        second = stream.worker(tmp_path / "worker-2.log", state_dir=tmp_path / "state-2")
        outputs.wait_for(lambda: owns_partitions(second), 120, [first, second])
        feeder.resume.set()  # the feed waits at 2/5 if the second worker is slow to start
        outputs.wait_sent(feeder, 3 / 5, [first, second])
        time.sleep(2)
        feeder.disruption_lands()
        second.stop()  # leaves the group: its partitions go back to the first worker
        return [second]

    run_with_disruption(stream, join_then_leave, first, feed_seconds=30, hold_at=2 / 5)


def owns_partitions(worker: WorkerProcess) -> bool:
    """Whether the worker has input partitions (its consumer-lag gauge has a series)."""
    try:
        return worker.alive() and b"moodshift_consumer_lag_records{" in worker.get("/metrics")
    except OSError:
        return False  # not listening yet


@pytest.mark.stress
def test_the_broker_restarts_mid_stream(kafka_cluster: Settings, tmp_path: Path) -> None:
    """The connector's producer and the worker ride out a broker restart (same ports, same data)."""
    settings = kafka_cluster.replace(state_dir=tmp_path / "broker-state", broker_port=free_port(),
                                     controller_port=free_port())
    broker = LocalBroker(settings)
    settings = settings.replace(bootstrap_servers=broker.start(), topic_prefix="restart.",
                                state_dir=tmp_path / "state")
    try:
        stream = prepare(settings, tmp_path)
        first = stream.worker(tmp_path / "worker.log")

        def restart_broker(feeder: Feeder, outputs: Outputs) -> list[WorkerProcess]:
            outputs.wait_sent(feeder, 1 / 3, [first])
            feeder.disruption_lands()
            broker.stop()
            time.sleep(3)
            broker.start()
            return []

        run_with_disruption(stream, restart_broker, first)
    finally:
        broker.stop()


DAY = timedelta(days=1)
# Daily windows closed by the idle timer, one post per user per day: the recipe of issue 12's kill -9.
DAILY = dict(window_size_seconds=86400, window_slide_seconds=86400, idle_close_seconds=10)


def daily_posts(users: int, days: int, seed: int) -> list[Post]:
    """One post a day per user at a random hour, sorted by event time as a file of them would be."""
    rng = np.random.default_rng(seed)
    posts = [Post(event_id=f"d{u}-{day}", user_id=f"daily-{u}", source="test", text=" ".join(rng.choice(WORDS, 5)),
                  event_time=START + day * DAY + timedelta(minutes=int(rng.integers(0, 24 * 60))))
             for u in range(users) for day in range(days)]
    return sorted(posts, key=lambda post: post.event_time)


def produce(settings: Settings, posts: list[Post]) -> None:
    with EventProducer(settings, source="test") as producer:
        for post in posts:
            producer.send_event(topics.POSTS, post)


def daily_stream(settings: Settings, users: int, days: int, seed: int) -> tuple[list[Post], dict, set]:
    """``daily_posts``, what an uninterrupted run publishes for them, and the context sent."""
    posts = daily_posts(users, days, seed)
    expected_steps, expected_changes = expected_daily(settings, posts)
    send(settings, [])
    return posts, expected_steps, expected_changes


def wait_for_everything(outputs: Outputs, expected_steps: dict, expected_changes: set,
                        workers: list[WorkerProcess]) -> None:
    """Until every expected output is out, or 240 s: ``assert_uninterrupted`` then says what is missing."""
    try:
        outputs.wait_for(lambda: outputs.steps.keys() >= expected_steps.keys()
                         and outputs.changes >= expected_changes, 240, workers)
    except AssertionError:
        pass


def assert_uninterrupted(outputs: Outputs, expected_steps: dict, expected_changes: set) -> None:
    """The outputs, deduplicated, are an uninterrupted run's: every step, same emotions, same changes."""
    missing = sorted(expected_steps.keys() - outputs.steps.keys())
    assert not missing, f"{len(missing)} of {len(expected_steps)} steps never came out, e.g. {missing[:10]}"
    assert outputs.steps.keys() == expected_steps.keys()
    differing = [key for key, step in outputs.steps.items()
                 if not np.allclose(step["emotion"], expected_steps[key]["emotion"], atol=1e-5, rtol=0)]
    assert not differing, f"{len(differing)} steps differ from the uninterrupted run's: {differing[:10]}"
    assert outputs.changes == expected_changes


def expected_daily(settings: Settings, posts: list[Post]) -> tuple[dict, set]:
    """Steps and change ids of an uninterrupted run: every post, then (with idle close on) every
    user's last window closed."""
    runtime = WorkerRuntime.from_settings(settings)
    for topic, record in make_records()[0]:
        runtime.add_context(settings.topic(topic), record.to_json_bytes())
    events, _ = runtime.decode([(settings.topic(topics.POSTS), p.user_id.encode(), p.to_json_bytes()) for p in posts])
    first = runtime.process(events, {}, 0)
    last = runtime.flush_users(first.records) if settings.idle_close_seconds else RuntimeOutputs()
    steps = {step_key(json.loads(v)): json.loads(v) for _, v in first.steps + last.steps}
    return steps, {json.loads(v)["change_id"] for _, v in first.change_points + last.change_points}


# make stress repeats one variant per scenario (a round must stay short); make test runs them all.
@pytest.mark.parametrize("guarantee, checkpoint_interval, store", [
    pytest.param("at_least_once", 1.0, "memory", marks=pytest.mark.stress), ("exactly_once", 1.0, "memory"),
    ("at_least_once", Settings().checkpoint_interval_seconds, "memory"), ("at_least_once", 1.0, "rocksdb")])
def test_a_killed_worker_with_idle_close_loses_nothing(kafka_settings: Settings, tmp_path: Path, guarantee: str,
                                                        checkpoint_interval: float, store: str) -> None:
    """Issue 12's recipe: daily windows that the idle timer closes, the first half ingested, kill -9
    while the worker is still on it, a new worker, the second half. Every step and change point must
    come out, with the emotions of an uninterrupted run; in both processing modes, with checkpoints
    every second (the kill lands between two) and at the default interval, and with the RocksDB
    store (the new worker starts from the killed one's local store and the changelog's tail)."""
    settings = worker_settings(kafka_settings, tmp_path).replace(
        processing_guarantee=guarantee, checkpoint_interval_seconds=checkpoint_interval, table_store=store, **DAILY)
    posts, expected_steps, expected_changes = daily_stream(settings, users=40, days=50, seed=12)
    assert len(expected_steps) == len(posts) and len(expected_changes) >= 5
    half = len(posts) // 2
    first = start_worker(settings, tmp_path / "worker-1.log")
    outputs = Outputs(settings)
    workers = [first]
    try:
        first.wait_ready()
        produce(settings, posts[:half])
        outputs.wait_for(lambda: len(outputs.steps) > 0, 60, workers)
        time.sleep(1)  # mid-backlog: the first steps are out, not all of the half's
        first.kill()
        outputs.poll()
        assert len(outputs.steps) < half, "the kill came after the first half was done: nothing was tested"
        workers.append(second := start_worker(settings, tmp_path / "worker-2.log"))
        second.wait_ready()
        produce(settings, posts[half:])
        wait_for_everything(outputs, expected_steps, expected_changes, workers)
    finally:
        for worker in workers:
            worker.stop()
        outputs.poll()
        outputs.close()
    assert_uninterrupted(outputs, expected_steps, expected_changes)
    assert_stopped_gracefully(workers)


def set_topic_config(settings: Settings, topic: str, **configs: str) -> None:
    """Change topic configs in place (incrementally: the others stay as they are)."""
    admin = KafkaAdminClient(**settings.kafka_python_config())
    try:
        admin.alter_configs([ConfigResource("TOPIC", topic, {k.replace("_", "."): v for k, v in configs.items()})])
    finally:
        admin.close()


@pytest.mark.parametrize("checkpoint_interval", [1.0, 3600.0], ids=["checkpoints", "before-the-first-checkpoint"])
def test_a_publish_that_fails_after_the_model_step_stops_the_worker_and_loses_nothing(
        kafka_settings: Settings, tmp_path: Path, checkpoint_interval: float) -> None:
    """No acknowledgement without apply. Mid-stream the broker starts rejecting the per-step
    outputs (the topic's max.message.bytes falls below a step's size), after the model has stepped
    the batch. The worker must stop with an error, not skip the batch; once the topic takes records
    again, a new worker must publish every step and change point of an uninterrupted run. Idle close
    is off: the subject is the failed publish, and a new worker does not close the windows of users
    it has no events of (README, "Not guaranteed"). With an hour between checkpoints the failure comes
    before the first one: nothing may be committed at all (faust acknowledged the events its
    restarted agent was handed after the crash, and committed them: 89 of 348 steps lost, CI)."""
    settings = worker_settings(kafka_settings, tmp_path).replace(
        **{**DAILY, "idle_close_seconds": 0, "checkpoint_interval_seconds": checkpoint_interval})
    posts, expected_steps, expected_changes = daily_stream(settings, users=12, days=30, seed=13)
    steps_topic = settings.topic(topics.EMOTION_STEPS)
    half = len(posts) // 2
    first = start_worker(settings, tmp_path / "worker-1.log")
    outputs = Outputs(settings)
    workers = [first]
    try:
        first.wait_ready()
        produce(settings, posts[:half])
        outputs.wait_for(lambda: len(outputs.steps) >= half - 12, 120, workers)  # all but each user's open day
        set_topic_config(settings, steps_topic, max_message_bytes="64")
        produce(settings, posts[half:])
        assert first.wait_exit(timeout=120) != 0, "the worker went on after a batch it could not publish"
        assert "stopping the worker" in first.log_path.read_text(errors="replace")
        outputs.poll()
        assert len(outputs.steps) < len(expected_steps), "every step came out: the failure was not injected"
        set_topic_config(settings, steps_topic, max_message_bytes="1048588")
        workers.append(start_worker(settings, tmp_path / "worker-2.log"))
        wait_for_everything(outputs, expected_steps, expected_changes, workers)
    finally:
        for worker in workers:
            worker.stop()
        outputs.close()
    assert_uninterrupted(outputs, expected_steps, expected_changes)


def test_exactly_once_fences_a_stalled_worker_even_after_compaction(kafka_settings: Settings, tmp_path: Path) -> None:
    """A worker that stalls past its session (SIGSTOP) while its records wait for a checkpoint loses
    its partitions; a second worker recovers them and goes on. The first then wakes up (SIGCONT) and
    its late checkpoint, the write a stale owner makes, must never reach a recovered state: with
    ``processing_guarantee=exactly_once`` the successor's transactional producers have fenced it.
    The changelog is then compacted (which keeps only each user's last record, so a stale record
    written last would be all that is left) and a third worker, recovering from it, must go on
    exactly as an uninterrupted run."""
    stream = prepare(kafka_settings, tmp_path)
    settings = stream.settings.replace(processing_guarantee="exactly_once")
    stream = Stream(settings, stream.posts, stream.expected_steps, stream.expected_changes)
    changelog = f"{settings.topic('worker')}-users-changelog"
    first = stream.worker(tmp_path / "worker-1.log")

    def stall_then_wake(feeder: Feeder, outputs: Outputs) -> list[WorkerProcess]:
        outputs.wait_sent(feeder, 1 / 3, [first])
        feeder.disruption_lands()
        first.process.send_signal(signal.SIGSTOP)
        second = stream.worker(tmp_path / "worker-2.log", state_dir=tmp_path / "state-2")
        outputs.wait_for(lambda: owns_partitions(second), 120, [second])
        outputs.wait_for(lambda: feeder.sent >= len(feeder.posts) * 2 / 3, 120, [second])  # the feed holds here
        time.sleep(4)  # the second worker checkpoints what it applied
        first.process.send_signal(signal.SIGCONT)
        try:
            first.process.wait(timeout=60)  # fenced: its late checkpoint fails and stops it
        except subprocess.TimeoutExpired:
            pass
        second.stop()
        compact(settings, changelog)
        third = stream.worker(tmp_path / "worker-3.log", state_dir=tmp_path / "state-3")
        outputs.wait_for(lambda: owns_partitions(third), 120, [third])
        feeder.resume.set()
        return [second, third]

    run_with_disruption(stream, stall_then_wake, first, feed_seconds=30, hold_at=2 / 3)


def compact(settings: Settings, topic: str, timeout: float = 120) -> None:
    """Have the broker's log cleaner compact ``topic`` now: roll its segment, then wait until no key
    appears twice among its records."""
    set_topic_config(settings, topic, min_cleanable_dirty_ratio="0.0001", segment_ms="100",
                     min_compaction_lag_ms="0", delete_retention_ms="100")
    time.sleep(0.5)
    with KafkaProducer(**settings.kafka_python_config()) as producer:  # rolls every partition's segment
        for partition in range(settings.partitions):
            producer.send(topic, key=b"compaction-roll", value=None, partition=partition).get(timeout=30)
    deadline = time.monotonic() + timeout
    while True:
        keys = [record.key for record in read_topic(settings, topic) if record.key != b"compaction-roll"]
        if len(keys) == len(set(keys)):
            return
        assert time.monotonic() < deadline, f"not compacted after {timeout} s: {len(keys)} records, {len(set(keys))} keys"
        time.sleep(2)
