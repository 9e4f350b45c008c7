"""Each change point says what drove it: leave-one-out effects of its windows' events and modalities."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import moodshift.pipeline
from moodshift.models.config import ModelConfig
from moodshift.models.change_details import EVIDENCE_EVENTS
from moodshift.models.detector import DetectorConfig
from moodshift.models.model import build_model
from moodshift.pipeline.stream.aggregate import ModalityFeatures
from moodshift.pipeline.stream.inference import InferenceEngine, StepRequest
from moodshift.pipeline.stream.processor import EmotionProcessor, UserEvent
from moodshift.pipeline.stream.records import UserRecord
from moodshift.pipeline.stream.windows import WindowSpec
from moodshift.models.inputs import Step
from moodshift.models.timefeatures import time_features

CONFIG = ModelConfig(image_dim=8, hidden_size=16, common_dim=8, text_dim=8, text_buckets=64, context_length=3)
SCHEMA = Path(moodshift.pipeline.__file__).parent / "schemas" / "emotion-change.v1.json"
# A detector that reports every change of the most likely emotion, so that a small random model gives
# plenty of change points.
EAGER = DetectorConfig(enter_threshold=0.0, margin=0.0, min_dwell=1, signal_dwell=1)


@pytest.fixture(scope="module")
def engine() -> InferenceEngine:
    return InferenceEngine(build_model(CONFIG, seed=3))


def posts(user: str, n: int) -> list[UserEvent]:
    """Three posts per one-hour window, some with an image."""
    rng = np.random.default_rng(sum(map(ord, user)))
    return [UserEvent(user, f"{user}-{i}", i * 1_200_000,
                      ModalityFeatures(tokens=rng.integers(0, 64, 4).tolist(),
                                       image=rng.normal(size=8).astype(np.float32) if i % 4 == 0 else None))
            for i in range(n)]


def hour(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()) // 3600


def change_points(processor: EmotionProcessor, events: list[UserEvent], batch: int) -> list[dict]:
    records: dict[str, UserRecord] = {}
    points = []
    for start in range(0, len(events), batch):
        chunk = events[start:start + batch]
        # Records travel through their byte format, as through the faust table.
        stored = {u: UserRecord.from_bytes(r.to_bytes()) for u, r in records.items()}
        result = processor.process(chunk, stored)
        records.update(result.records)
        points += [point.to_json_dict() for point in result.change_points]
    return points


def test_change_points_carry_evidence_from_their_own_windows(engine: InferenceEngine) -> None:
    events = posts("u1", 240) + posts("u2", 240)
    processor = EmotionProcessor(engine, WindowSpec(3_600_000, 3_600_000, 0), detector_config=EAGER)
    points = change_points(processor, events, batch=len(events))
    assert len(points) >= 5, points
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    for point in points:
        validator.validate(point)
        evidence = point["evidence"]
        effects = [event["effect"] for event in evidence["events"]]
        assert effects == sorted(effects, reverse=True) and 1 <= len(effects) <= EVIDENCE_EVENTS
        # The events named are the user's own, from the window that confirmed the change.
        start, end = hour(point["detected_at"]) - 1, hour(point["detected_at"])
        for event in evidence["events"]:  # three posts an hour
            user, index = event["event_id"].rsplit("-", 1)
            assert user == point["user_id"] and start * 3 <= int(index) < end * 3
        assert set(evidence["modality_effects"]) == set(point["modalities"])
        shares = evidence["modality_shares"]
        assert sum(shares.values()) == pytest.approx(1.0) or not any(shares.values())
        pushed = {m for m, effect in evidence["modality_effects"].items() if effect > 0}
        assert {m for m, share in shares.items() if share > 0} == pushed


def test_evidence_does_not_depend_on_batch_boundaries(engine: InferenceEngine) -> None:
    """Probes start from the state before their own step, also for a user's later windows in a batch."""
    events = posts("u1", 150) + posts("u2", 150)
    events.sort(key=lambda event: event.event_time_ms)
    processor = EmotionProcessor(engine, WindowSpec(3_600_000, 3_600_000, 0), detector_config=EAGER)
    whole = change_points(processor, events, batch=len(events))
    split = change_points(processor, events, batch=5)
    assert [p["change_id"] for p in whole] == [p["change_id"] for p in split] and len(whole) >= 3
    for a, b in zip(whole, split):
        assert [e["event_id"] for e in a["evidence"]["events"]] == [e["event_id"] for e in b["evidence"]["events"]]
        np.testing.assert_allclose([e["effect"] for e in a["evidence"]["events"]],
                                   [e["effect"] for e in b["evidence"]["events"]], atol=1e-5)
        for name, effect in a["evidence"]["modality_effects"].items():
            assert b["evidence"]["modality_effects"][name] == pytest.approx(effect, abs=1e-5)


def test_an_effect_is_the_drop_of_the_new_emotion_without_that_event(engine: InferenceEngine) -> None:
    """The first change point of a user fed one window per batch, checked against model steps made by
    hand from the state its record held before the confirming window."""
    processor = EmotionProcessor(engine, WindowSpec(3_600_000, 3_600_000, 0), detector_config=EAGER)
    events = [event for event in posts("u1", 240) if event.features.image is None]  # text only
    record, previous_end = None, None
    for hour in range(80):  # one batch per window; the first event of the next hour closes it
        batch = [e for e in events if hour * 3_600_000 <= e.event_time_ms < (hour + 1) * 3_600_000]
        result = processor.process(batch, {} if record is None else {"u1": record})
        if result.change_points:
            break
        before = result.records["u1"]
        record = UserRecord.from_bytes(before.to_bytes())
        previous_end = result.steps[-1].window_end_ms if result.steps else previous_end
    (point,) = result.change_points
    (step,) = result.steps
    window = [e for e in events if point.window_start_ms <= e.event_time_ms < point.window_end_ms]
    assert len(window) >= 2
    new = engine.labels.index(point.to_emotion)
    time = time_features(point.window_end_ms / 1000, previous_end / 1000)

    def probability(left_out: str | None, text: bool = True) -> float:
        tokens = [t for e in window if e.event_id != left_out for t in e.features.tokens] if text else None
        inputs = Step(time=time, text_ids=tokens or None)
        return engine.step([StepRequest("u1", record.model, inputs)])[0].stage1_probs[new]

    full = probability(None)
    assert full == pytest.approx(step.class_probs[new], abs=1e-6)
    evidence = point.evidence
    assert dict(evidence.modality_effects) == pytest.approx({"text": full - probability(None, text=False)}, abs=1e-6)
    by_hand = sorted(((e.event_id, full - probability(e.event_id)) for e in window), key=lambda item: -item[1])
    assert [name for name, _ in evidence.events] == [name for name, _ in by_hand][:EVIDENCE_EVENTS]
    assert [effect for _, effect in evidence.events] == pytest.approx([e for _, e in by_hand][:EVIDENCE_EVENTS],
                                                                       abs=1e-6)
