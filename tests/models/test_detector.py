"""The change detector: hysteresis, dwell, stage-2 signal, ids, output record, state."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moodshift.models.detector import (
    CHANGE_POINT_SCHEMA_VERSION,
    ChangeDetector,
    ChangePoint,
    DetectorConfig,
    DetectorStep,
    TUNING_GRID,
    change_id,
    iso_utc,
    onsets,
)

LABELS = ["calm", "joy", "anger", "sadness"]
SLIDE, SIZE = 60_000, 600_000
DWELL_3 = DetectorConfig(min_dwell=3, signal_dwell=2)  # the stage-2 signal can shorten it by one step


def step(i: int, probs, change: float = 0.0, modalities=("text",)) -> DetectorStep:
    probs = np.asarray(probs, dtype=float)
    end = (i + 1) * SLIDE
    return DetectorStep(probs.tolist(), change, (probs * 2).tolist(), end - SIZE, end, modalities)


def peaked(label: int, p: float) -> list[float]:
    probs = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1))
    probs[label] = p
    return probs.tolist()


def feed(detector: ChangeDetector, steps) -> list[ChangePoint]:
    return [point for s in steps if (point := detector.update(s)) is not None]


def noisy_timeline(rng: np.random.Generator, segments: list[tuple[int, int]], blip_rate: float = 0.15):
    """Steps whose dominant emotion follows ``segments`` (label, length), with one-step blips."""
    steps, i, blipped = [], 0, False
    for label, length in segments:
        for _ in range(length):
            blipped = not blipped and rng.random() < blip_rate
            if blipped:  # a single loud step of any emotion, never two in a row
                probs = peaked(int(rng.integers(len(LABELS))), 0.9)
            else:
                probs = rng.dirichlet(np.full(len(LABELS), 0.5))
                probs = 0.35 * probs + 0.65 * np.asarray(peaked(label, 1.0))
            steps.append(step(i, probs, change=float(rng.random() * 0.3)))
            i += 1
    return steps


def test_sustained_change_is_caught_once_at_its_onset():
    detector = ChangeDetector("u", LABELS, "m1")
    steps = [step(i, peaked(0, 0.8)) for i in range(5)] + [step(i, peaked(2, 0.7)) for i in range(5, 15)]
    [point] = feed(detector, steps)
    assert (point.from_emotion, point.to_emotion) == ("calm", "anger")
    assert point.event_time_ms == point.window_end_ms == 6 * SLIDE  # onset step 5
    assert point.window_start_ms == 6 * SLIDE - SIZE
    assert point.detected_at_ms == 7 * SLIDE  # the default min_dwell: 2 steps
    assert point.confidence == pytest.approx(0.7)
    assert point.emotion_shift == pytest.approx(np.linalg.norm(2 * np.subtract(peaked(2, 0.7), peaked(0, 0.8))))
    assert detector.current == "anger"


def test_stage_two_signal_shortens_the_dwell():
    detector = ChangeDetector("u", LABELS, "m1", DWELL_3)
    feed(detector, [step(i, peaked(0, 0.8)) for i in range(3)])
    assert detector.update(step(3, peaked(1, 0.7), change=0.9)) is None
    point = detector.update(step(4, peaked(1, 0.7), change=0.1))
    assert point is not None and point.change_probability == pytest.approx(0.9)


def test_emotion_vector_shift_can_be_the_signal():
    config = DetectorConfig(min_dwell=3, signal_dwell=2, change_threshold=1.1, shift_threshold=0.5)
    detector = ChangeDetector("u", LABELS, "m1", config)
    feed(detector, [step(i, peaked(0, 0.8)) for i in range(3)])
    assert detector.update(step(3, peaked(1, 0.7))) is None
    assert detector.update(step(4, peaked(1, 0.7))) is not None


def test_weak_or_narrow_candidates_do_not_enter():
    detector = ChangeDetector("u", LABELS, "m1")
    feed(detector, [step(i, peaked(0, 0.8)) for i in range(3)])
    below_threshold = [0.3, 0.45, 0.15, 0.1]
    within_margin = [0.47, 0.53, 0.0, 0.0]
    assert feed(detector, [step(i, below_threshold) for i in range(3, 10)]) == []
    assert feed(detector, [step(i, within_margin) for i in range(10, 20)]) == []
    assert detector.current == "calm"


def test_alternating_strong_steps_never_flap():
    detector = ChangeDetector("u", LABELS, "m1")
    steps = [step(i, peaked(0, 0.8)) for i in range(3)]
    steps += [step(i, peaked(1 + i % 2, 0.9), change=0.2) for i in range(3, 60)]
    assert feed(detector, steps) == []


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_noise_never_triggers_but_real_changes_are_found_at_onset(seed):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(len(LABELS))[:3].tolist()
    steps = noisy_timeline(rng, [(labels[0], 30), (labels[1], 25), (labels[2], 25)], blip_rate=0.3)
    points = feed(ChangeDetector("u", LABELS, "m1"), steps)
    assert [(p.from_emotion, p.to_emotion) for p in points] == [
        (LABELS[labels[0]], LABELS[labels[1]]),
        (LABELS[labels[1]], LABELS[labels[2]]),
    ]
    # Each onset is the first run of min_dwell steps dominated by the new emotion (a blip may
    # start it one step before the segment, or break it early on and delay it).
    dominant = [int(np.argmax(s.class_probs)) for s in steps]
    dwell = DetectorConfig().min_dwell
    for point, label, segment_start in zip(points, labels[1:], (30, 55)):
        onset = next(
            j for j in range(segment_start - 1, len(steps)) if dominant[j : j + dwell] == [label] * dwell
        )
        assert point.event_time_ms == steps[onset].window_end_ms


def test_first_confirmed_emotion_is_a_baseline_not_a_change():
    detector = ChangeDetector("u", LABELS, "m1")
    assert feed(detector, [step(i, peaked(3, 0.9)) for i in range(10)]) == []
    assert detector.current == "sadness"


def test_redelivered_steps_change_nothing():
    steps = [step(i, peaked(0, 0.8)) for i in range(3)] + [step(i, peaked(1, 0.8)) for i in range(3, 6)]
    once = feed(ChangeDetector("u", LABELS, "m1"), steps)
    with_duplicates = feed(ChangeDetector("u", LABELS, "m1"), [s for s in steps for _ in range(2)])
    assert once == with_duplicates and len(once) == 1


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 80))
def test_state_round_trip_through_json_gives_the_same_change_points(seed, cut):
    rng = np.random.default_rng(seed)
    steps = noisy_timeline(rng, [(0, 20), (1, 20), (2, 20), (0, 20)])
    straight = feed(ChangeDetector("u", LABELS, "m1"), steps)
    detector = ChangeDetector("u", LABELS, "m1")
    points = feed(detector, steps[:cut])
    detector = ChangeDetector.from_dict(json.loads(json.dumps(detector.to_dict())), LABELS, "m1")
    points += feed(detector, steps[cut:])
    assert points == straight


def test_ids_are_deterministic_and_distinct():
    assert change_id("u1", 60_000) == change_id("u1", 60_000)
    assert len({change_id("u1", 60_000), change_id("u1", 120_000), change_id("u2", 60_000)}) == 3
    assert len(change_id("u1", 0)) == 32


def test_output_record():
    detector = ChangeDetector("user-7", LABELS, "emo-2024.1")
    feed(detector, [step(i, peaked(0, 0.8)) for i in range(3)])
    seen = [(3, ["text"]), (4, ["image", "text"]), (5, [])]
    [point] = feed(detector, [step(i, peaked(1, 0.8), modalities=m) for i, m in seen])
    record = json.loads(json.dumps(point.to_json_dict()))
    assert record == {
        "schema_version": CHANGE_POINT_SCHEMA_VERSION,
        "change_id": change_id("user-7", 4 * SLIDE),
        "user_id": "user-7",
        "event_time": "1970-01-01T00:04:00.000Z",
        "from_emotion": "calm",
        "to_emotion": "joy",
        "confidence": pytest.approx(0.8),
        "change_probability": 0.0,
        "emotion_shift": pytest.approx(point.emotion_shift),
        "window": {"start": "1969-12-31T23:54:00.000Z", "end": "1970-01-01T00:04:00.000Z"},
        "detected_at": "1970-01-01T00:05:00.000Z",  # two steps: the default min_dwell
        "modalities": ["image", "text"],
        "model_version": "emo-2024.1",
    }
    assert iso_utc(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        DetectorConfig(min_dwell=2, signal_dwell=3)
    with pytest.raises(ValueError, match="class probabilities"):
        ChangeDetector("u", LABELS, "m").update(step(0, [0.5, 0.5]))


def test_onsets_are_where_the_emitted_change_points_begin() -> None:
    labels = ["negative", "neutral", "positive"]
    neg, pos, unsure = [0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.4, 0.3, 0.3]
    probs = np.array([neg] * 5 + [pos, unsure] + [pos] * 5 + [neg] * 2)
    assert onsets(probs, np.zeros(len(probs)), labels) == [7, 12]  # two in a row: from step 7, from 12
    assert onsets(probs, np.zeros(len(probs)), labels, DWELL_3) == [7]  # three: the negatives are too few
    signalled = np.zeros(len(probs))
    signalled[5] = 0.9  # stage 2 says "change" at the first positive: one step confirms it
    assert onsets(probs, signalled, labels, DetectorConfig(min_dwell=3, signal_dwell=1, change_threshold=0.5)) == [5]
    assert onsets(probs, np.zeros(len(probs)), labels, DetectorConfig(min_dwell=1, signal_dwell=1)) == [5, 12]  # an unsure step never moves the current emotion


def test_the_tuning_grid_holds_distinct_valid_settings() -> None:
    assert len(set(TUNING_GRID)) == len(TUNING_GRID) > 100
    assert all(config.signal_dwell <= config.min_dwell for config in TUNING_GRID)
    assert DetectorConfig(margin=0.1, min_dwell=3, signal_dwell=1, change_threshold=0.5) in TUNING_GRID


def test_a_change_point_names_the_emotions_that_rose_and_fell_and_survives_a_restart() -> None:
    """Named emotions: before = the previous emotion's running mean, after = the streak's mean."""
    named = ("joy", "sadness", "fear")
    detector = ChangeDetector("u", LABELS, "m", DetectorConfig(min_dwell=2, signal_dwell=2), named)
    sad, happy = [0.1, 0.8, 0.3], [0.9, 0.1, 0.2]
    steps = [DetectorStep(peaked(3, 0.9), 0.0, [0.0] * 4, 0, (i + 1) * SLIDE, ("text",), sad) for i in range(3)]
    steps += [DetectorStep(peaked(1, 0.9), 0.0, [0.0] * 4, 0, (i + 4) * SLIDE, ("text",),
                           [value + 0.02 * i for value in happy]) for i in range(2)]
    assert feed(detector, steps[:4]) == []
    restored = ChangeDetector.from_dict(json.loads(json.dumps(detector.to_dict())), LABELS, "m",
                                        detector.config, named)
    (point,) = feed(restored, steps[4:])
    emotions = point.to_json_dict()["emotions"]
    assert (point.from_emotion, point.to_emotion) == ("sadness", "joy")
    assert emotions["rose"] == "joy" and emotions["fell"] == "sadness"
    assert emotions["before"] == pytest.approx(dict(zip(named, sad)))
    assert emotions["after"] == pytest.approx({"joy": 0.91, "sadness": 0.11, "fear": 0.21})


def test_without_named_emotions_a_change_point_has_no_emotions_field() -> None:
    detector = ChangeDetector("u", LABELS, "m", DetectorConfig(min_dwell=1, signal_dwell=1))
    points = feed(detector, [step(0, peaked(0, 0.9)), step(1, peaked(1, 0.9))])
    assert len(points) == 1 and "emotions" not in points[0].to_json_dict()
