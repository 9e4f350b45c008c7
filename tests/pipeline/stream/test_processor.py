"""The worker's plain-Python core: windows → batched incremental steps → change points."""

from __future__ import annotations

import numpy as np
import pytest

from moodshift.models.config import ModelConfig
from moodshift.models.inputs import Step
from moodshift.models.model import build_model
from moodshift.models.state import UserStates
from moodshift.pipeline.stream.inference import InferenceEngine, StepRequest
from moodshift.pipeline.stream.records import UserRecord
from moodshift.pipeline.stream.processor import EmotionProcessor, UserEvent
from moodshift.pipeline.stream.aggregate import ModalityFeatures
from moodshift.pipeline.stream.windows import WindowSpec

CONFIG = ModelConfig(image_dim=8, hidden_size=16, common_dim=8, text_dim=8, text_buckets=64, context_length=3)


@pytest.fixture(scope="module")
def engine() -> InferenceEngine:
    return InferenceEngine(build_model(CONFIG, seed=1))


def events_for(user: str, n: int, start_ms: int = 0, gap_ms: int = 45_000) -> list[UserEvent]:
    rng = np.random.default_rng(abs(hash(user)) % 1000)
    return [UserEvent(user, f"{user}-{i}", start_ms + i * gap_ms,
                      ModalityFeatures(tokens=rng.integers(0, 64, 3).tolist(),
                                       image=rng.normal(size=8).astype(np.float32) if i % 3 == 0 else None))
            for i in range(n)]


def run_in_batches(processor: EmotionProcessor, batches: list[list[UserEvent]]):
    records: dict = {}
    steps = []
    for batch in batches:
        # Records travel through their byte format, as through the faust table.
        stored = {u: UserRecord.from_bytes(records[u].to_bytes()) for u in {e.user_id for e in batch} if u in records}
        result = processor.process(batch, stored)
        records.update(result.records)
        steps += result.steps
    return steps, records


def test_splitting_the_stream_into_batches_changes_nothing(engine: InferenceEngine) -> None:
    """State carried in records between batches == one big batch: the step is truly incremental."""
    processor = EmotionProcessor(engine, WindowSpec(120_000, 60_000, 30_000))
    events = events_for("u1", 40) + events_for("u2", 25, start_ms=10_000)
    whole, _ = run_in_batches(processor, [events])
    split, _ = run_in_batches(processor, [events[i:i + 7] for i in range(0, len(events), 7)])
    key = lambda s: (s.user_id, s.window_end_ms)  # noqa: E731
    assert [key(s) for s in sorted(whole, key=key)] == [key(s) for s in sorted(split, key=key)]
    assert len(whole) > 30
    for a, b in zip(sorted(whole, key=key), sorted(split, key=key)):
        np.testing.assert_allclose(a.emotion, b.emotion, atol=1e-5)
        np.testing.assert_allclose(a.class_probs, b.class_probs, atol=1e-5)


def test_float16_state_halves_the_model_state_and_batches_change_nothing_beyond_its_rounding() -> None:
    """``state_dtype=float16``: every step starts from the rounded state, in memory as after a
    restart, so splitting the stream into batches differs only by how batching rounds."""
    key = lambda s: (s.user_id, s.window_end_ms)  # noqa: E731
    events = events_for("u1", 30) + events_for("u2", 20, start_ms=10_000)
    runs = {}
    for dtype in ("float16", "float32"):
        processor = EmotionProcessor(InferenceEngine(build_model(CONFIG, seed=1), state_dtype=dtype),
                                     WindowSpec(120_000, 60_000, 30_000))
        whole, records = run_in_batches(processor, [events])
        split, _ = run_in_batches(processor, [events[i:i + 7] for i in range(0, len(events), 7)])
        assert sorted(map(key, whole)) == sorted(map(key, split))
        for a, b in zip(sorted(whole, key=key), sorted(split, key=key)):
            np.testing.assert_allclose(a.emotion, b.emotion, atol=5e-3)
        runs[dtype] = (sorted(whole, key=key), len(records["u1"].model))
    header = 22  # models.state: magic, version, dtype, layers, hidden, labels, steps, history
    assert runs["float16"][1] - header == (runs["float32"][1] - header) // 2
    differences = [np.abs(np.subtract(a.emotion, b.emotion)).max() for a, b in zip(runs["float16"][0], runs["float32"][0])]
    assert 0 < max(differences) < 5e-2


def test_users_batched_together_equal_each_alone(engine: InferenceEngine) -> None:
    processor = EmotionProcessor(engine, WindowSpec(60_000, 60_000, 0))
    together, _ = run_in_batches(processor, [events_for("a", 12) + events_for("b", 12)])
    alone = run_in_batches(processor, [events_for("a", 12)])[0] + run_in_batches(processor, [events_for("b", 12)])[0]
    assert {(s.user_id, s.window_end_ms): s.emotion for s in together}.keys() == \
        {(s.user_id, s.window_end_ms): s.emotion for s in alone}.keys()
    alone_by_key = {(s.user_id, s.window_end_ms): s for s in alone}
    for step in together:
        np.testing.assert_allclose(step.emotion, alone_by_key[(step.user_id, step.window_end_ms)].emotion, atol=1e-5)


def test_late_events_are_returned_not_dropped(engine: InferenceEngine) -> None:
    processor = EmotionProcessor(engine, WindowSpec(60_000, 60_000, 0))
    result = processor.process(events_for("u", 5) + [UserEvent("u", "old", 1_000, ModalityFeatures(tokens=[1]))], {})
    assert [e.event_id for e in result.late_events] == ["old"]  # late within its batch, too
    late = processor.process([UserEvent("u", "older", 500, ModalityFeatures())], result.records)
    assert [e.event_id for e in late.late_events] == ["older"]


def test_flush_closes_open_windows_and_state_survives(engine: InferenceEngine) -> None:
    processor = EmotionProcessor(engine, WindowSpec(60_000, 60_000, 0))
    first = processor.process(events_for("u", 3, gap_ms=60_000), {})
    flushed = processor.process([], first.records, flush=True)
    assert [s.window_end_ms for s in first.steps + flushed.steps] == [60_000, 120_000, 180_000]
    assert UserRecord.from_bytes(flushed.records["u"].to_bytes()).model is not None


def test_engine_rounds_keep_each_users_order(engine: InferenceEngine) -> None:
    step = Step(time=np.zeros(6, np.float32), text_ids=[1, 2])
    results = engine.step([StepRequest("x", None, step), StepRequest("y", None, step), StepRequest("x", None, step)])
    assert [int(UserStates.from_bytes(r.state).steps[0]) for r in results] == [1, 1, 2]
    sequential = engine.step([StepRequest("x", results[0].state, step)])[0]
    assert sequential.state == results[2].state


def test_a_failing_batch_becomes_dead_letters_with_a_reason() -> None:
    """WorkerRuntime.reject: what the worker sends when processing a batch raised."""
    from datetime import datetime, timezone

    from moodshift.connectors.schemas import DeadLetter, Post
    from moodshift.pipeline.worker.runtime import InputEvent, WorkerRuntime

    runtime = WorkerRuntime.__new__(WorkerRuntime)  # reject needs only the dead-letter helper
    post = Post(event_id="e1", user_id="u1", event_time=datetime(2016, 1, 1, tzinfo=timezone.utc), text="hi")
    (key, value), = runtime.reject([InputEvent(post)], "internal_error", "RuntimeError('boom')").dead_letters
    letter = DeadLetter.from_json_bytes(value)
    assert key == b"u1" and letter.reason == "internal_error" and letter.topic == "posts"
    assert Post.from_json_bytes(letter.original) == post


def test_a_replayed_event_is_skipped_not_counted_twice(engine: InferenceEngine) -> None:
    """After a crash, Kafka hands out events whose effect the stored record already holds: a batch
    replayed over the record it produced changes nothing, and new events still count."""
    processor = EmotionProcessor(engine, WindowSpec(120_000, 60_000, 0))
    positioned = [UserEvent(e.user_id, e.event_id, e.event_time_ms, e.features, "posts/0", offset)
                  for offset, e in enumerate(events_for("u", 12))]
    first = processor.process(positioned[:8], {})
    assert first.records["u"].applied == {"posts/0": 7}
    replayed = processor.process(positioned, first.records)  # offsets 0..7 again, then 8..11
    assert (replayed.events_replayed, replayed.events_windowed) == (8, 4)
    straight, _ = run_in_batches(processor, [positioned])
    key = lambda s: (s.user_id, s.window_end_ms)  # noqa: E731
    assert [key(s) for s in first.steps + replayed.steps] == [key(s) for s in straight]
    np.testing.assert_allclose([s.emotion for s in first.steps + replayed.steps],
                               [s.emotion for s in straight], atol=1e-5)


def test_a_batch_that_cannot_be_decoded_becomes_dead_letters_whole() -> None:
    """WorkerRuntime.reject_raw: when decoding itself raised (a bug), every raw record is kept."""
    from moodshift.connectors.schemas import DeadLetter
    from moodshift.pipeline.settings import Settings
    from moodshift.pipeline.worker.runtime import RawRecord, WorkerRuntime

    runtime = WorkerRuntime.__new__(WorkerRuntime)
    runtime._topic_kinds = {Settings().topic("posts"): "posts"}
    raw = [RawRecord(Settings().topic("posts"), b"u" * 10_000, b"\xff not json", None, 0, 7)]
    (key, value), = runtime.reject_raw(raw, "internal_error", "ValueError('bug')")
    letter = DeadLetter.from_json_bytes(value)
    assert (letter.reason, letter.topic, letter.original) == ("internal_error", "posts", b"\xff not json")
    assert key is not None and len(key) <= 256  # a huge input key is capped in the letter


def test_a_model_with_named_emotions_puts_them_in_steps_and_change_points() -> None:
    from moodshift.models.config import PLUTCHIK
    from moodshift.models.detector import DetectorConfig

    engine = InferenceEngine(build_model(CONFIG.replace(named_emotions=PLUTCHIK), seed=3))
    eager = DetectorConfig(enter_threshold=0.0, margin=0.0, min_dwell=1, signal_dwell=1)
    processor = EmotionProcessor(engine, WindowSpec(3_600_000, 3_600_000, 0), detector_config=eager)
    events = [UserEvent("u1", f"e{i}", i * 1_200_000, ModalityFeatures(tokens=[i % 64, (7 * i) % 64]))
              for i in range(300)]
    result = processor.process(events, {})
    record = result.steps[0].to_json_dict(engine.labels, "m", engine.named_emotions)
    assert list(record["emotions"]) == list(PLUTCHIK) and all(0 <= v <= 1 for v in record["emotions"].values())
    assert result.change_points, "the eager detector should find changes of a random model's top emotion"
    for point in result.change_points:
        emotions = point.to_json_dict()["emotions"]
        after, before = emotions["after"], emotions["before"]
        rises = {name: after[name] - before[name] for name in PLUTCHIK}
        assert emotions["rose"] == max(rises, key=rises.get) and emotions["fell"] == min(rises, key=rises.get)


def test_a_record_stored_under_another_key_belongs_to_that_key(engine: InferenceEngine) -> None:
    """The table key says whose record it is: a record copied from u1 to u2 (a restored backup, a
    benchmark's clones) files u2's late events and windows under u2, not under the id stored inside."""
    processor = EmotionProcessor(engine, WindowSpec(60_000, 60_000, 0))
    first = processor.process(events_for("u1", 10), {})
    copied = UserRecord.from_bytes(first.records["u1"].to_bytes())
    late = UserEvent("u2", "late", 0, ModalityFeatures(tokens=[1]))
    on_time = UserEvent("u2", "next", 10 * 45_000, ModalityFeatures(tokens=[2]))
    result = processor.process([late, on_time], {"u2": copied})
    assert [(e.user_id, e.event_id) for e in result.late_events] == [("u2", "late")]
    assert {step.user_id for step in result.steps} == {"u2"} and set(result.records) == {"u2"}
    assert result.records["u2"].windows["user_id"] == "u2" and result.records["u2"].detector["user_id"] == "u2"
