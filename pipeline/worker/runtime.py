"""What a worker holds besides faust: the model, the feature extractor, the context, the processor.

:class:`WorkerRuntime` is plain Python: it turns raw Kafka records (topic, key, value, timestamp)
into validated events, features, model steps and publishable outputs. The faust app calls it; tests
call it directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, NamedTuple, Sequence

from moodshift.connectors import topics as topic_names
from moodshift.connectors.record import Rejected
from moodshift.connectors.schemas import DeadLetter, MarketTick, Post, VideoClip, WeatherObservation
from moodshift.models.checkpoint import CheckpointMeta, default_checkpoint_path
from moodshift.pipeline import metrics
from moodshift.models.detector import DetectorConfig
from moodshift.pipeline.stream.context import DailyContext
from moodshift.pipeline.stream.features import FeatureExtractor
from moodshift.pipeline.stream.inference import InferenceEngine
from moodshift.pipeline.stream.processor import EmotionProcessor, ProcessResult, UserEvent
from moodshift.pipeline.stream.records import UserRecord
from moodshift.pipeline.settings import Settings
from moodshift.pipeline.stream.windows import WindowSpec

log = logging.getLogger(__name__)

class RawRecord(NamedTuple):
    """One record as consumed; ``partition`` and ``offset`` are None when it did not come from Kafka."""

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True)
class InputEvent:
    """A validated post or video and where it was read (see :class:`pipeline.stream.processor.UserEvent`)."""

    event: Post | VideoClip
    source: str | None = None  # "<logical topic>/<partition>"
    offset: int | None = None

    @property
    def user_id(self) -> str:
        return self.event.user_id


@dataclass
class Outputs:
    """What one batch produced: updated user records and (key, value) pairs for each output topic."""

    records: dict[str, UserRecord] = field(default_factory=dict)
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    change_points: list[tuple[bytes, bytes]] = field(default_factory=list)
    steps: list[tuple[bytes, bytes]] = field(default_factory=list)


def detector_config(settings: Settings, meta: CheckpointMeta | None) -> DetectorConfig:
    """The checkpoint's tuned detector settings (or the detector's defaults), with any that
    ``settings`` gives instead; a smaller ``min_dwell`` also caps the stage-2 ``signal_dwell``.

    >>> detector_config(Settings(detector_min_dwell=1), None)
    DetectorConfig(enter_threshold=0.5, margin=0.1, min_dwell=1, change_threshold=0.5, signal_dwell=1, shift_threshold=None, baseline_alpha=0.2)
    """
    base = DetectorConfig(**meta.detector) if meta and meta.detector else DetectorConfig()
    given = {name: getattr(settings, f"detector_{name}") for name in ("enter_threshold", "margin", "min_dwell")}
    config = dataclasses.replace(base, **{name: value for name, value in given.items() if value is not None},
                                 signal_dwell=min(base.signal_dwell, given["min_dwell"] or base.min_dwell))
    log.info("change detector: %s (%s)", config, "tuned in the checkpoint" if meta and meta.detector else "defaults")
    return config


class WorkerRuntime:
    """Decodes, extracts features, steps the model and formats outputs for one worker."""

    def __init__(self, settings: Settings, engine: InferenceEngine, extractor: FeatureExtractor) -> None:
        self.settings = settings
        self.engine = engine
        self.extractor = extractor
        meta = engine.meta
        normaliser = meta.context_normaliser if meta else None
        config = engine.config
        self.context = DailyContext(
            settings.context_location, settings.context_symbol, config.context_length,
            mean=normaliser.mean if normaliser else (0.0,) * len(config.context_channels),
            std=normaliser.std if normaliser else (1.0,) * len(config.context_channels),
            channels=config.context_channels,
        )
        spec = WindowSpec(settings.window_size_seconds * 1000, settings.window_slide_seconds * 1000,
                          settings.allowed_lateness_seconds * 1000)
        self.processor = EmotionProcessor(engine, spec, self.context, detector_config(settings, meta))
        self._topic_kinds = {settings.topic(name): name for name in (
            topic_names.POSTS, topic_names.VIDEOS, topic_names.WEATHER, topic_names.MARKET)}
        # user → (monotonic time, source) of their last event, for idle closing
        self._last_seen: dict[str, tuple[float, str | None]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> "WorkerRuntime":
        checkpoint = settings.model_checkpoint or default_checkpoint_path(settings.state_dir)
        engine = InferenceEngine.from_checkpoint(checkpoint, settings.device, settings.state_dtype)
        return cls(settings, engine, FeatureExtractor.for_engine(engine, settings))

    # -- user events -----------------------------------------------------------------------------

    def decode(self, raw: Sequence[RawRecord | tuple]) -> tuple[list[InputEvent], list[tuple[bytes | None, bytes]]]:
        """Validated posts and videos, and dead letters for the records that are not."""
        events: list[InputEvent] = []
        dead: list[tuple[bytes | None, bytes]] = []
        for record in (RawRecord(*r) for r in raw):
            kind = self._topic_kinds.get(record.topic)
            schema = Post if kind == topic_names.POSTS else VideoClip
            try:
                event = schema.from_json_bytes(record.value or b"")
            except Rejected as error:
                dead.append(self._dead_letter(kind or record.topic, record.key, record.value or b"",
                                              error.reason, str(error)))
                continue
            source = None if record.partition is None else self.source_of(record.topic, record.partition)
            events.append(InputEvent(event, source, record.offset))
        return events, dead

    def source_of(self, topic: str, partition: int) -> str:
        """The name a partition has in users' records: "posts/3" (no topic prefix)."""
        return f"{self._topic_kinds.get(topic, topic)}/{partition}"

    def user_ids(self, events: Iterable[InputEvent]) -> set[str]:
        return {event.user_id for event in events}

    def process(self, events: Sequence[InputEvent], records: dict[str, UserRecord | None], received_ms: int) -> Outputs:
        """Features, windows, model steps and change points for a batch of validated events."""
        outputs = Outputs()
        user_events: list[UserEvent] = []
        extracted = self.extractor.extract([item.event for item in events])
        for item, (features, problems) in zip(events, extracted):
            event = item.event
            for reason, message in problems:
                outputs.dead_letters += self.reject([item], reason, message).dead_letters
            user_events.append(UserEvent(event.user_id, event.event_id, event.event_time_ms, features,
                                         item.source, item.offset))
        result = self.processor.process(user_events, records)
        now = time.monotonic()
        for item in events:
            self._last_seen[item.user_id] = (now, item.source)
        if result.late_events:
            by_id = {(item.user_id, item.event.event_id): item for item in events}
            for late in result.late_events:
                metrics.LATE_EVENTS.inc()
                message = f"event time {late.event_time_ms} ms is behind the user's watermark {late.watermark_ms} ms"
                outputs.dead_letters += self.reject([by_id[late.user_id, late.event_id]], late.reason,
                                                    message).dead_letters
        self._collect(result, outputs, received_ms)
        return outputs

    def reject(self, events: Sequence[InputEvent], reason: str, message: str) -> Outputs:
        """Dead letters for every event of a batch that could not be processed; no state changes."""
        outputs = Outputs()
        for item in events:
            topic = topic_names.VIDEOS if isinstance(item.event, VideoClip) else topic_names.POSTS
            outputs.dead_letters.append(
                self._dead_letter(topic, item.user_id.encode(), item.event.to_json_bytes(), reason, message))
        return outputs

    def reject_raw(self, raw: Sequence[RawRecord], reason: str, message: str) -> list[tuple[bytes | None, bytes]]:
        """Dead letters for raw records that could not even be decoded (a bug, not bad input)."""
        return [self._dead_letter(self._topic_kinds.get(r.topic, r.topic), r.key, r.value or b"", reason, message)
                for r in raw]

    def idle_users(self, idle_seconds: float, owned_sources: set[str] | None = None) -> list[str]:
        """Users with no event for ``idle_seconds``. With ``owned_sources`` ("posts/0", ...), only users
        whose last event came from one of them: after a rebalance another worker owns the rest, and
        they are forgotten here."""
        if owned_sources is not None:
            for user, (_, source) in list(self._last_seen.items()):
                if source is not None and source not in owned_sources:
                    del self._last_seen[user]
        cutoff = time.monotonic() - idle_seconds
        return [user for user, (seen, _) in self._last_seen.items() if seen < cutoff]

    def flush_users(self, records: dict[str, UserRecord | None]) -> Outputs:
        """Close every open window of these users (they went quiet); see docs on idle closing."""
        for user in records:
            self._last_seen.pop(user, None)
        outputs = Outputs()
        result = self.processor.process([], records, flush=True)
        self._collect(result, outputs, int(time.time() * 1000))
        return outputs

    def _collect(self, result: ProcessResult, outputs: Outputs, received_ms: int) -> None:
        outputs.records = result.records
        metrics.EVENTS_WINDOWED.inc(result.events_windowed)
        if result.events_replayed:
            metrics.EVENTS_REPLAYED.inc(result.events_replayed)
            log.info("skipped %d events their users' records had applied already (a replay after a crash "
                     "or a rebalance)", result.events_replayed)
        if result.steps:
            metrics.WINDOW_STEPS.inc(len(result.steps))
            metrics.BATCH_SIZE.observe(len(result.steps))
            metrics.MODEL_STEP_SECONDS.observe(result.model_seconds)
        labels, version = self.engine.labels, self.engine.model_version
        for step in result.steps:
            if self.settings.emit_step_emotions:
                outputs.steps.append((step.user_id.encode(),
                                      json.dumps(step.to_json_dict(labels, version, self.engine.named_emotions)).encode()))
        for point in result.change_points:
            metrics.CHANGE_POINTS.labels(from_emotion=point.from_emotion, to_emotion=point.to_emotion).inc()
            metrics.EVENT_TIME_TO_EMIT_SECONDS.observe(max(0.0, (received_ms - point.detected_at_ms) / 1000))
            document = point.to_json_dict()
            document["random_backbone"] = bool(self.engine.meta and self.engine.meta.random_backbone)
            outputs.change_points.append((point.user_id.encode(), json.dumps(document).encode()))

    def _dead_letter(self, topic: str, key: bytes | None, value: bytes, reason: str,
                     message: str) -> tuple[bytes | None, bytes]:
        """A dead letter for input meant for the logical ``topic`` (``posts``, ``videos``, ...)."""
        metrics.DEAD_LETTERS.labels(reason=reason).inc()
        log.warning("dead letter for %s: %s: %s", topic, reason, message)
        letter = DeadLetter.create(value, source="worker", topic=topic, reason=reason, message=message,
                                   key=key.decode("utf-8", "replace") if key else None)
        # The letter's key, capped by DeadLetter: a huge input key must not make the letter too big.
        return (letter.key.encode() if letter.key is not None else None), letter.to_json_bytes()

    # -- context ---------------------------------------------------------------------------------

    def add_context(self, topic: str, value: bytes, key: bytes | None = None,
                    where: str = "") -> tuple[bytes | None, bytes] | None:
        """Feed one weather or market record into the daily context; the dead letter (key, value) to
        send if it is invalid. ``where`` ("weather[0]@12") goes into the letter's message."""
        kind = self._topic_kinds.get(topic, topic)
        try:
            if kind == topic_names.WEATHER:
                observation = WeatherObservation.from_json_bytes(value)
                self.context.add_weather(observation.location_id, observation.event_time_ms,
                                         observation.temperature_c)
            else:
                tick = MarketTick.from_json_bytes(value)
                self.context.add_market(tick.symbol, tick.event_time_ms, tick.close, tick.volume)
        except Rejected as error:
            return self._dead_letter(kind, key, value, error.reason, f"{where} {error}".strip())
        return None

    async def follow_context(self, settings: Settings, ready: asyncio.Event,
                             send_dead_letter: Callable[[bytes | None, bytes], Awaitable[Any]]) -> None:
        """Read weather and market from the beginning, forever; set ``ready`` once caught up.

        A plain consumer with no group gets every partition: every worker needs the whole context,
        whatever users it owns. So an invalid record is dead-lettered by every worker, at each start
        (its message names the record's partition and offset, for deduplication).
        """
        from aiokafka import AIOKafkaConsumer

        wanted = (settings.topic(topic_names.WEATHER), settings.topic(topic_names.MARKET))
        consumer = AIOKafkaConsumer(*wanted, **settings.aiokafka_config(), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            end: dict[Any, int] | None = None
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    for record in records:
                        metrics.RECORDS_IN.labels(topic=tp.topic).inc()
                        letter = self.add_context(tp.topic, record.value or b"", record.key,
                                                  f"{tp.topic}[{tp.partition}]@{record.offset}")
                        if letter is not None:
                            await send_dead_letter(*letter)
                if end is None and consumer.assignment():
                    end = await consumer.end_offsets(list(consumer.assignment()))
                if end is not None and not ready.is_set():
                    positions = {tp: await consumer.position(tp) for tp in end}
                    if all(positions[tp] >= offset for tp, offset in end.items()):
                        log.info("context caught up: %d records in %d partitions", sum(end.values()), len(end))
                        ready.set()
        finally:
            await consumer.stop()
