"""The faust worker: thin glue between Kafka and :class:`pipeline.stream.processor.EmotionProcessor`.

- ``posts`` and ``videos`` (keyed by user id, co-partitioned) feed one agent in batches of at most
  ``batch_max_users`` records, one batch per ``batch_max_wait_ms`` at most and the next at once
  when the worker is behind (:mod:`pipeline.worker.pacing`);
- each batch: admit events in offset order (:mod:`pipeline.worker.state`), decode and validate (bad
  records → dead letters), extract features and run the model **off the event loop** (one executor
  thread, so model calls never overlap and heartbeats, commits and rebalances never wait behind
  them), publish change points (and optionally per-step emotions), and keep the users' records in
  memory until the next checkpoint writes them to the ``users`` table's changelog;
- ``weather`` and ``market`` are read in full by every worker (they are small and every user step
  needs them) by a plain consumer without a group, into :class:`pipeline.stream.context.DailyContext`; the
  agent's first batch waits until that consumer has caught up with the end offsets it saw at start.

Guarantee: at-least-once output, exact state. A batch's outputs are acknowledged by Kafka before its
records are staged; a checkpoint writes the staged records, waits for Kafka, and only then commits
the offsets after the events they include (:mod:`pipeline.worker.checkpoint_consumer`). A crash replays
what came after the last checkpoint, the records' applied offsets keep replayed events out of the
windows, and the change detector's deterministic ids let consumers deduplicate outputs (README,
Operations). With
``processing_guarantee=exactly_once`` the changelog and the offsets commit in one Kafka transaction
per partition; a record stored late by a worker that had lost the user's partition is aborted, and
in either mode it does not replace a more advanced one when the table recovers
(:mod:`pipeline.worker.users_table`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, TypeVar

import faust

from moodshift.connectors import topics as topic_names
from moodshift.pipeline import metrics
from moodshift.pipeline.worker.transport import KEY_PARTITIONER, WorkerTransport
from moodshift.pipeline.worker.flow_control import FlowControl
from moodshift.pipeline.worker.pacing import BatchPacer
from moodshift.pipeline.worker.quiet_monitor import QuietMonitor
from moodshift.pipeline.worker.raw_schema import RawSchema
from moodshift.pipeline.settings import Settings
from moodshift.pipeline.worker.users_table import UsersTable
from moodshift.pipeline.worker.runtime import Outputs, RawRecord, WorkerRuntime
from moodshift.pipeline.worker.stacks import stack_dump
from moodshift.pipeline.worker.state import WorkerState

log = logging.getLogger(__name__)

Result = TypeVar("Result")


def build_app(settings: Settings, runtime: WorkerRuntime | None = None) -> faust.App:
    """The faust app of one moodshift worker; ``runtime`` (model, features) loads on start when None."""
    return Worker(settings, runtime).app


# Below the broker's and topics' default max.message.bytes (1 MiB): a batch is one message there.
PRODUCER_BATCH_BYTES = 512 * 1024


def _faust_app(settings: Settings) -> faust.App:
    (settings.state_dir / "worker").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.topic("worker"),
        broker=settings.faust_broker_url(),
        broker_credentials=settings.faust_broker_credentials(),
        # The changelog is the durable copy either way; see docs/architecture.md.
        store=f"{settings.table_store}://",  # rocksdb: through rocksdict
        # No standby replicas. With the memory store a partition's recovery re-reads its changelog
        # from the start whatever a standby read before, so a standby only costs fetches and memory,
        # and its fetch ran across every rebalance (the recovery hangs of issue 12 began as standby
        # promotions; the cause, dropped fetches, is answered in pipeline/worker/checkpoint_consumer.py).
        table_standby_replicas=0,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        datadir=str(settings.state_dir / "worker"),
        web_port=settings.worker_web_port,
        web_bind="0.0.0.0",
        producer_acks=-1,
        # A checkpoint hands the producer one ~9 KB record per changed user (2,000 in the end-to-end
        # benchmark). In faust's default 16 KB batch each record filled a batch, and aiokafka waits
        # for a partition's full batch to go out (one request in flight per broker) before it appends
        # the next: records drained at ~600/s and a checkpoint took seconds.
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        producer_partitioner=KEY_PARTITIONER,  # the default's partitions, hashes remembered (transport.py)
        processing_guarantee=settings.processing_guarantee,
        # Offsets are committed by the checkpoint (pipeline.worker.state); faust's own timer commits
        # only what a checkpoint reported (pipeline.worker.checkpoint_consumer), so it may run as often.
        broker_commit_interval=settings.checkpoint_interval_seconds,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.worker_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.worker_session_timeout_seconds / 3),
        Monitor=QuietMonitor,  # faust's statistics per record: nobody reads them (pipeline/worker/quiet_monitor.py)
    )
    # Before anything asks for the consumer or the producer: the consumer commits checkpointed
    # offsets, not acknowledged ones; the producer is idempotent (pipeline/worker/transport.py).
    app.transport = WorkerTransport(app.conf.broker_consumer, app, batch_max_wait_ms=settings.batch_max_wait_ms)
    # Before any stream creates its queue: resuming a flowing stream must not drop what it fetched.
    app.flow_control = FlowControl()
    return app


class Worker:
    """One worker's faust app and what its agent, tasks, timers and pages share."""

    def __init__(self, settings: Settings, runtime: WorkerRuntime | None = None) -> None:
        self.settings = settings
        self.app = app = _faust_app(settings)
        # Raw bytes in and out (pipeline/worker/raw_schema.py): validation is ours (connectors.schemas).
        # With faust's default JSON codec a record that is not JSON would be dropped before the agent
        # sees it, not dead-lettered.
        self.events = app.topic(settings.topic(topic_names.POSTS), settings.topic(topic_names.VIDEOS),
                                schema=RawSchema())
        self.dead_letters = app.topic(settings.topic(topic_names.DEAD_LETTERS), schema=RawSchema())
        self.changes = app.topic(settings.topic(topic_names.EMOTION_CHANGES), schema=RawSchema())
        self.steps = app.topic(settings.topic(topic_names.EMOTION_STEPS), schema=RawSchema())
        self.input_topics = {settings.topic(topic_names.POSTS), settings.topic(topic_names.VIDEOS)}
        # Keys are the raw user-id bytes, as on the input topics, and the producer's partitioner
        # places changelog records: so a user's record lives on the partition of the user's events.
        # The broker compresses the changelog (a batch of records at a time) when it creates the
        # topic: the worker spends no CPU on it, and recovery's reads decode it (docs/benchmarks.md).
        users = app.tables.add(UsersTable(
            app, name="users", beacon=app.tables.beacon, key_type=bytes, value_type=bytes,
            partitions=settings.partitions, use_partitioner=True,
            extra_topic_configs={"compression.type": settings.changelog_compression}))
        self.state = WorkerState(app, settings, users)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moodshift-model")
        self.holder: dict[str, WorkerRuntime] = {} if runtime is None else {"runtime": runtime}
        self.context_ready = asyncio.Event()
        self._loading: list[asyncio.Future] = []  # one load shared by every caller
        self._register()
        app.moodshift_runtime = self.holder  # for tests

    def _register(self) -> None:
        app, settings = self.app, self.settings
        app.agent(self.events)(self.process_events)
        app.task(self.checkpoint_now_and_then)
        app.task(self.follow_context)
        app.on_partitions_revoked.connect(self.checkpoint_before_handing_over)
        app.on_partitions_assigned.connect(self.start_from_committed_offsets)
        app.on_before_shutdown.connect(self.close_offset_reader)
        if settings.idle_close_seconds > 0:
            app.timer(interval=max(1.0, settings.idle_close_seconds / 4))(self.close_idle_users)
        app.timer(interval=5.0)(_counted_not_raised("consumer_lag")(self.report_consumer_lag))
        app.timer(interval=15.0)(_counted_not_raised("gpu_memory")(report_gpu_memory))
        worker = self

        async def health(web: Any, request: Any) -> Any:  # a plain function: faust binds it to its view
            return worker.health(web)

        app.page("/health")(health)
        app.page("/metrics")(metrics_page)
        app.page("/debug/stacks")(stacks_page)

    async def runtime(self) -> WorkerRuntime:
        if "runtime" not in self.holder:
            if not self._loading:
                self._loading.append(self.in_model_thread(WorkerRuntime.from_settings, self.settings))
            self.holder["runtime"] = await self._loading[0]
        return self.holder["runtime"]

    def in_model_thread(self, call: Callable[..., Result], *args: Any) -> asyncio.Future[Result]:
        """``call(*args)`` in the model thread, its CPU time counted in
        ``moodshift_model_thread_cpu_seconds_total``."""
        return asyncio.get_running_loop().run_in_executor(self.executor, _thread_cpu_counted, call, *args)

    async def publish(self, outputs: Outputs, events: list[faust.EventT]) -> None:
        """Hand every output of a batch to the producer, then stage its records with the events they
        include and the outputs' acknowledgements. The next batch does not wait for those (waiting,
        a broker round trip per batch, took a fifth of a saturated worker's time); the checkpoint does, before it stores the records (a crash before then replays the
        batch, which publishes the same outputs again: consumers deduplicate by id), and a failed one
        stops the worker (``WorkerState.output_sent``)."""
        records = [(self.dead_letters.get_topic_name(), key, value) for key, value in outputs.dead_letters]
        records += [(self.changes.get_topic_name(), key, value) for key, value in outputs.change_points]
        if self.settings.emit_step_emotions:
            records += [(self.steps.get_topic_name(), key, value) for key, value in outputs.steps]
        # Straight to aiokafka's producer under faust's plain one (its transactional ones hold changelog
        # records and offsets only). Through faust's Topic.send (a message, a future and a callback per
        # record) the producer's sender went out between records, four or five a request; this way a
        # batch's outputs go in one or two, for about a fifth less CPU per post (docs/benchmarks.md,
        # "Outputs without faust's send"). The same partitioner, the same order per key.
        producer = self.app.producer._ensure_producer()
        sent = [await producer.send(topic, value, key=key) for topic, key, value in records]
        for ack in sent:
            ack.add_done_callback(self.state.output_sent)
        self.state.records.stage(outputs.records, events, sent)

    # -- the agent -------------------------------------------------------------------------------

    async def process_events(self, stream: faust.StreamT) -> None:
        settings = self.settings
        # Iterate at once: awaiting before the first iteration can leave faust's stream stopped
        # (seen with faust-streaming 0.15.3). The first batch waits for the model and the context.
        # noack_take: events are acknowledged by the checkpoint, never by the stream.
        pacer = BatchPacer(settings.batch_max_wait_ms / 1000)
        async for batch in stream.noack_take(settings.batch_max_users, within=pacer.tick_seconds):
            if len(batch) < settings.batch_max_users:
                await asyncio.sleep(pacer.wait_seconds())
            pacer.started()
            if not await self.process_batch(batch):
                return  # the worker is stopping

    async def process_batch(self, batch: list[faust.EventT]) -> bool:
        """Admit, decode, process and publish one batch, then stage its records; False: stopping."""
        runtime, state = await self.runtime(), self.state
        await self.context_ready.wait()
        received_ms = int(time.time() * 1000)
        async with state.lock:
            admitted = await state.admit(batch)
            records_in = [RawRecord(m.topic, m.key, m.value, m.timestamp, m.partition, m.offset)
                          for m in (event.message for event in admitted)]
            for topic, count in Counter(record.topic for record in records_in).items():
                metrics.RECORDS_IN.labels(topic=topic).inc(count)
            try:
                valid, rejected = runtime.decode(records_in)
            except Exception as error:  # a validation bug: the batch goes to dead letters, whole
                metrics.PROCESSING_ERRORS.labels(stage="decode").inc()
                log.exception("decoding a batch of %d records failed; dead-lettering it", len(records_in))
                valid, rejected = [], runtime.reject_raw(records_in, "internal_error", repr(error))
            records = {user: state.records.get(user) for user in runtime.user_ids(valid)}
            try:
                outputs = await self.in_model_thread(runtime.process, valid, records, received_ms)
            except Exception as error:  # a bug must not lose the batch nor stop the worker
                metrics.PROCESSING_ERRORS.labels(stage="process").inc()
                log.exception("processing a batch of %d records failed; dead-lettering it", len(valid))
                outputs = runtime.reject(valid, "internal_error", repr(error))
            outputs.dead_letters[:0] = rejected
            if not await state.or_stop("publish", self.publish(outputs, admitted)):
                return False
        log.debug("batch: %d records, %d applied, %d users, %d dead letters, %d change points", len(batch),
                  len(admitted), len(outputs.records), len(outputs.dead_letters), len(outputs.change_points))
        return True

    # -- checkpoints and rebalances --------------------------------------------------------------

    async def checkpoint(self) -> bool:
        return await self.state.or_stop("checkpoint", self.state.checkpoint())

    async def checkpoint_now_and_then(self) -> None:
        # A plain loop, not an app.timer: faust stops timers as soon as the worker begins to stop,
        # and the stop then waits for every delivered event to be acknowledged, which only a
        # checkpoint does. This task runs until faust cancels it, after the consumer has stopped.
        while True:
            await asyncio.sleep(self.settings.checkpoint_interval_seconds)
            if not await self.checkpoint():
                return  # the worker is stopping

    async def checkpoint_before_handing_over(self, sender: Any, revoked: Any, **kwargs: Any) -> None:
        await self.checkpoint()  # what idle closes changed (batches were checkpointed: faust waited for acks)

    async def start_from_committed_offsets(self, sender: Any, assigned: Any, **kwargs: Any) -> None:
        self.state.on_rebalance()

    async def close_offset_reader(self, sender: Any, **kwargs: Any) -> None:
        await self.state.stop()

    # -- context, idle users, reports ------------------------------------------------------------

    async def follow_context(self) -> None:
        runtime = await self.runtime()

        async def send_dead_letter(key: bytes | None, value: bytes) -> None:
            await (await self.dead_letters.send(key=key, value=value))

        await runtime.follow_context(self.settings, self.context_ready, send_dead_letter)

    async def close_idle_users(self) -> None:
        runtime, state, idle_seconds = await self.runtime(), self.state, self.settings.idle_close_seconds
        async with state.lock:
            owned = {runtime.source_of(tp.topic, tp.partition)
                     for tp in self.app.consumer.assignment() if tp.topic in self.input_topics}
            # Under the lock: a batch in the model may be about to make one of them active again.
            idle = runtime.idle_users(idle_seconds, owned)
            if not idle:
                return
            records = {user: state.records.get(user) for user in idle}
            log.debug("closing the windows of %d idle users", len(idle))
            try:
                outputs = await self.in_model_thread(runtime.flush_users, records)
            except Exception:  # their windows stay open and close with their next events
                metrics.PROCESSING_ERRORS.labels(stage="idle_close").inc()
                log.exception("closing the windows of %d idle users failed", len(idle))
                return
            await state.or_stop("publish", self.publish(outputs, []))

    async def report_consumer_lag(self) -> None:
        """Lag per input partition: the broker's high-water mark minus the consumer's position."""
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic not in self.input_topics:
                continue
            # Both are None for a partition assigned a moment ago (seen right after a rebalance).
            position, highwater = await consumer.position(tp), consumer.highwater(tp)
            if position is not None and highwater is not None:
                lag = max(0, highwater - position)
                metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

    def health(self, web: Any) -> Any:
        """200 once the model has loaded and the context has caught up, 503 before."""
        ready = "runtime" in self.holder and self.context_ready.is_set()
        return web.json({"status": "ok" if ready else "starting", "ready": ready},
                        status=200 if ready else 503)


def _thread_cpu_counted(call: Callable[..., Result], *args: Any) -> Result:
    started = time.thread_time()
    try:
        return call(*args)
    finally:
        metrics.MODEL_THREAD_CPU_SECONDS.inc(time.thread_time() - started)


async def report_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            device = f"cuda:{index}"
            metrics.GPU_MEMORY_BYTES.labels(device=device, kind="allocated").set(torch.cuda.memory_allocated(index))
            metrics.GPU_MEMORY_BYTES.labels(device=device, kind="reserved").set(torch.cuda.memory_reserved(index))


async def metrics_page(web: Any, request: Any) -> Any:
    body, content_type = metrics.exposition()
    return web.bytes(body, content_type=content_type.split(";")[0])


async def stacks_page(web: Any, request: Any) -> Any:
    """Every task's chain of awaits and every thread's stack (pipeline/worker/stacks.py)."""
    return web.text(stack_dump())


def _counted_not_raised(stage: str) -> Callable[[Callable[[], Awaitable[None]]], Callable[[], Awaitable[None]]]:
    """For timers: an exception in a faust timer crashes the whole worker; a report that failed
    once must not. The failure is counted in ``moodshift_processing_errors_total{stage}`` and logged."""
    def decorate(timer: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        @functools.wraps(timer)
        async def guarded() -> None:
            try:
                await timer()
            except Exception:
                metrics.PROCESSING_ERRORS.labels(stage=stage).inc()
                log.exception("%s failed; trying again at the next tick", stage)
        return guarded
    return decorate

