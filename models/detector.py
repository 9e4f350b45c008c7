"""Per-user change detection over model steps, with hysteresis and a minimum dwell.

Each closed window gives one model step: stage-1 class probabilities, the stage-2 change probability
and the emotion vector. :class:`ChangeDetector` turns that stream into rare, confirmed
:class:`ChangePoint` records:

- The user's **current emotion** is kept without any threshold: a noisy or unsure step never
  moves it. A **new** emotion must *enter*: be the most likely class with probability
  ``>= enter_threshold`` and at least ``margin`` above the current emotion's probability. That gap
  between staying (free) and entering (strong evidence) is the hysteresis.
- The new emotion must enter on ``min_dwell`` consecutive steps (the streak); any other step resets
  the streak. When the stage-2 change probability reaches ``change_threshold`` on a step of the
  streak (or, if ``shift_threshold`` is set, the emotion vector moved at least that far, in
  Euclidean distance, from the current emotion's running mean vector), ``signal_dwell`` steps suffice.
- The first confirmed emotion of a user is its baseline and emits nothing (there is no "from").
- Flapping back costs the same confirmation again, so alternating noise emits nothing.

Times are ``int`` milliseconds since the Unix epoch. A change point's ``event_time_ms`` is the end of
the window where the streak **began** (the onset), and its ``change_id`` is a hash of user id and that
time: replays and at-least-once redelivery can only repeat a record with the same id. Steps whose
window end is not after the last one seen are ignored, so a redelivered step changes nothing.

State (:meth:`ChangeDetector.to_dict`) is a small JSON-able dict for a faust table; the labels and
model version come from the model and are passed in, not stored.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import numpy as np

from moodshift.models.change_details import ChangeEvidence, NamedEmotionShift

CHANGE_POINT_SCHEMA_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@functools.lru_cache(maxsize=4096)  # window bounds: every user's windows share them
def iso_utc(time_ms: int) -> str:
    """``1700000000000`` → ``'2023-11-14T22:13:20.000Z'`` (exact: integer milliseconds)."""
    return (_EPOCH + timedelta(milliseconds=time_ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def change_id(user_id: str, event_time_ms: int) -> str:
    """Deterministic id of a change point: sha256 of ``[user_id, event_time_ms]``, 32 hex digits."""
    return hashlib.sha256(json.dumps([user_id, event_time_ms]).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class DetectorConfig:
    """Detector parameters; see the module docstring for how they act."""

    enter_threshold: float = 0.5
    margin: float = 0.1
    # Dwell 2 without the stage-2 shortcut: what `moodshift train` tuned for both presets, and off the
    # training data 0.054 F1 better than dwell 3 (docs/model/README.md). The defaults serve checkpoints
    # without tuned settings.
    min_dwell: int = 2
    change_threshold: float = 0.5
    signal_dwell: int = 2  # = min_dwell: stage 2 shortens nothing unless told
    shift_threshold: float | None = None
    baseline_alpha: float = 0.2  # weight of a new step in the current emotion's running mean vector

    def __post_init__(self) -> None:
        if not 1 <= self.signal_dwell <= self.min_dwell:
            raise ValueError("need 1 <= signal_dwell <= min_dwell")
        if not 0 < self.baseline_alpha <= 1:
            raise ValueError("baseline_alpha must be in (0, 1]")


@dataclass(frozen=True)
class DetectorStep:
    """One model step of one user, for the window ``[window_start_ms, window_end_ms)``."""

    class_probs: Sequence[float]
    change_prob: float
    emotion_vector: Sequence[float]
    window_start_ms: int
    window_end_ms: int
    modalities: Sequence[str] = ()
    named: Sequence[float] = ()  # the named emotions' scores (ChangeDetector.named_emotions), if any


@dataclass(frozen=True)
class ChangePoint:
    """A confirmed emotion change of one user; ``to_json_dict`` is the output topic's record.

    ``window_*`` is the onset window, ``detected_at_ms`` the end of the window that confirmed it,
    ``confidence`` the mean probability of the new emotion over the confirming streak,
    ``change_probability`` the highest stage-2 output in it, ``emotion_shift`` how far the streak's mean
    emotion vector lies from the previous emotion's running mean, ``modalities`` those seen in it.
    ``evidence`` (what drove it) is added afterwards by whoever can measure it (the worker:
    pipeline/stream/evidence.py); the detector's decisions never depend on it.
    """

    change_id: str
    user_id: str
    event_time_ms: int
    from_emotion: str
    to_emotion: str
    confidence: float
    change_probability: float
    emotion_shift: float
    window_start_ms: int
    window_end_ms: int
    detected_at_ms: int
    modalities: tuple[str, ...]
    model_version: str
    evidence: ChangeEvidence | None = None
    emotions: NamedEmotionShift | None = None

    def to_json_dict(self) -> dict[str, Any]:
        record = {
            "schema_version": CHANGE_POINT_SCHEMA_VERSION,
            "change_id": self.change_id,
            "user_id": self.user_id,
            "event_time": iso_utc(self.event_time_ms),
            "from_emotion": self.from_emotion,
            "to_emotion": self.to_emotion,
            "confidence": self.confidence,
            "change_probability": self.change_probability,
            "emotion_shift": self.emotion_shift,
            "window": {"start": iso_utc(self.window_start_ms), "end": iso_utc(self.window_end_ms)},
            "detected_at": iso_utc(self.detected_at_ms),
            "modalities": list(self.modalities),
            "model_version": self.model_version,
        }
        if self.evidence is not None:
            record["evidence"] = self.evidence.to_json_dict()
        if self.emotions is not None:
            record["emotions"] = self.emotions.to_json_dict()
        return record


@dataclass
class _Streak:
    """Consecutive steps on which one new emotion entered."""

    emotion: str
    onset_start_ms: int
    onset_end_ms: int
    steps: int = 0
    probability_sum: float = 0.0
    max_change_prob: float = 0.0
    signalled: bool = False
    vector_sum: list[float] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    named_sum: list[float] = field(default_factory=list)  # of the named emotions' scores


class ChangeDetector:
    """Hysteresis + minimum-dwell change detector for one user.

    >>> detector = ChangeDetector("u1", labels=["calm", "joy"], model_version="m1")
    >>> def step(end, joy, change=0.0):
    ...     return DetectorStep([1 - joy, joy], change, [joy], end - 600_000, end, ["text"])
    >>> [detector.update(step(end, 0.1)) for end in (60_000, 120_000, 180_000)]  # baseline: calm
    [None, None, None]
    >>> detector.update(step(240_000, 0.9)), detector.update(step(300_000, 0.2))  # a blip
    (None, None)
    >>> detector.update(step(360_000, 0.8))  # a second step in a row confirms it (min_dwell 2)
    >>> point = detector.update(step(420_000, 0.9))
    >>> point.from_emotion, point.to_emotion, point.event_time_ms, point.detected_at_ms
    ('calm', 'joy', 360000, 420000)
    >>> round(point.confidence, 3), point.to_json_dict()["event_time"]
    (0.85, '1970-01-01T00:06:00.000Z')
    """

    def __init__(
        self,
        user_id: str,
        labels: Sequence[str],
        model_version: str,
        config: DetectorConfig | None = None,
        named_emotions: Sequence[str] = (),
    ) -> None:
        self.user_id = user_id
        self.labels = tuple(labels)
        self.model_version = model_version
        self.config = config or DetectorConfig()
        self.named_emotions = tuple(named_emotions)
        self.current: str | None = None
        self._baseline: np.ndarray | None = None  # running mean emotion vector of `current`
        self._named_baseline: np.ndarray | None = None  # running mean of its named emotions' scores
        self._streak: _Streak | None = None
        self._last_window_end_ms: int | None = None

    def update(self, step: DetectorStep) -> ChangePoint | None:
        """Feed one step (in window-end order); return a change point when one is confirmed."""
        if self._last_window_end_ms is not None and step.window_end_ms <= self._last_window_end_ms:
            return None
        self._last_window_end_ms = step.window_end_ms
        probs = np.asarray(step.class_probs, dtype=np.float64)
        if probs.shape != (len(self.labels),):
            raise ValueError(f"expected {len(self.labels)} class probabilities, got shape {probs.shape}")
        vector = np.asarray(step.emotion_vector, dtype=np.float64)
        top = int(np.argmax(probs))  # ties: the first label, deterministically
        emotion, probability = self.labels[top], float(probs[top])

        named = np.asarray(step.named, dtype=np.float64)
        if not self._enters(emotion, probability, probs):
            self._streak = None
            if emotion == self.current:
                self._baseline = self._follow(self._baseline, vector)
                if len(named):
                    self._named_baseline = self._follow(self._named_baseline, named)
            return None
        streak = self._extend_streak(emotion, probability, vector, step)
        needed = self.config.signal_dwell if streak.signalled else self.config.min_dwell
        if streak.steps < needed:
            return None
        return self._confirm(streak, step)

    def _enters(self, emotion: str, probability: float, probs: np.ndarray) -> bool:
        if emotion == self.current or probability < self.config.enter_threshold:
            return False
        if self.current is None:
            return True
        return probability - float(probs[self.labels.index(self.current)]) >= self.config.margin

    def _shift(self, vector: np.ndarray) -> float:
        if self._baseline is None or self._baseline.shape != vector.shape:
            return 0.0
        return float(np.linalg.norm(vector - self._baseline))

    def _extend_streak(
        self, emotion: str, probability: float, vector: np.ndarray, step: DetectorStep
    ) -> _Streak:
        if self._streak is None or self._streak.emotion != emotion:
            self._streak = _Streak(emotion, step.window_start_ms, step.window_end_ms, vector_sum=[0.0] * len(vector))
        streak = self._streak
        streak.steps += 1
        streak.probability_sum += probability
        streak.max_change_prob = max(streak.max_change_prob, float(step.change_prob))
        shift = self.config.shift_threshold
        streak.signalled |= step.change_prob >= self.config.change_threshold or (
            shift is not None and self._shift(vector) >= shift
        )
        streak.vector_sum = (np.asarray(streak.vector_sum) + vector).tolist()
        if len(step.named):
            named = np.asarray(step.named, dtype=np.float64)
            streak.named_sum = (named + (np.asarray(streak.named_sum) if streak.named_sum else 0.0)).tolist()
        streak.modalities = sorted(set(streak.modalities) | set(step.modalities))
        return streak

    def _follow(self, mean: np.ndarray | None, vector: np.ndarray) -> np.ndarray:
        """A running mean moved toward ``vector`` by ``baseline_alpha``."""
        if mean is None or mean.shape != vector.shape:
            return vector
        return mean + self.config.baseline_alpha * (vector - mean)

    def _confirm(self, streak: _Streak, step: DetectorStep) -> ChangePoint | None:
        mean_vector = np.asarray(streak.vector_sum) / streak.steps
        previous, emotion_shift = self.current, self._shift(mean_vector)
        named_before = self._named_baseline
        named_after = np.asarray(streak.named_sum) / streak.steps if streak.named_sum else None
        self.current, self._baseline, self._streak = streak.emotion, mean_vector, None
        self._named_baseline = named_after
        if previous is None:
            return None  # the first confirmed emotion is the baseline, not a change
        emotions = None
        if named_before is not None and named_after is not None and len(named_after) == len(self.named_emotions):
            emotions = NamedEmotionShift(dict(zip(self.named_emotions, named_before.tolist())),
                                         dict(zip(self.named_emotions, named_after.tolist())))
        return ChangePoint(
            change_id=change_id(self.user_id, streak.onset_end_ms),
            user_id=self.user_id,
            event_time_ms=streak.onset_end_ms,
            from_emotion=previous,
            to_emotion=streak.emotion,
            confidence=streak.probability_sum / streak.steps,
            change_probability=streak.max_change_prob,
            emotion_shift=emotion_shift,
            window_start_ms=streak.onset_start_ms,
            window_end_ms=streak.onset_end_ms,
            detected_at_ms=step.window_end_ms,
            modalities=tuple(streak.modalities),
            model_version=self.model_version,
            emotions=emotions,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "current": self.current,
            "baseline": None if self._baseline is None else self._baseline.tolist(),
            "named_baseline": None if self._named_baseline is None else self._named_baseline.tolist(),
            "streak": None if self._streak is None else asdict(self._streak),
            "last_window_end_ms": self._last_window_end_ms,
        }

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        labels: Sequence[str],
        model_version: str,
        config: DetectorConfig | None = None,
        named_emotions: Sequence[str] = (),
        user_id: str | None = None,
    ) -> ChangeDetector:
        """Restore :meth:`to_dict`'s state; ``user_id`` (e.g. the table key) overrides the stored id."""
        detector = cls(data["user_id"] if user_id is None else user_id, labels, model_version, config, named_emotions)
        detector.current = data["current"]
        detector._baseline = None if data["baseline"] is None else np.asarray(data["baseline"], dtype=np.float64)
        named_baseline = data.get("named_baseline")  # absent from records written before named emotions
        detector._named_baseline = None if named_baseline is None else np.asarray(named_baseline, dtype=np.float64)
        detector._streak = None if data["streak"] is None else _Streak(**data["streak"])
        detector._last_window_end_ms = data["last_window_end_ms"]
        return detector


# -- the detector on whole timelines: evaluation and tuning --------------------------------------

# The settings ``moodshift train`` tries on its validation timelines (the best is written to the
# checkpoint, and a worker uses it unless told otherwise). A streak confirmed by the stage-2 signal
# needs ``signal_dwell`` steps; without one (change_threshold above 1), ``min_dwell``.
TUNING_GRID: tuple[DetectorConfig, ...] = tuple(
    DetectorConfig(enter_threshold=enter, margin=margin, min_dwell=dwell, change_threshold=change,
                   signal_dwell=signal)
    for enter in (0.4, 0.5, 0.6, 0.7) for margin in (0.0, 0.1, 0.2) for dwell in (1, 2, 3, 4)
    for signal, change in ([(1, 0.3), (1, 0.5), (1, 0.7)] if dwell > 1 else []) + [(dwell, 1.01)])


def onsets(class_probs: np.ndarray, change_probs: np.ndarray, labels: Sequence[str],
           config: DetectorConfig | None = None) -> list[int]:
    """The steps where the change points a worker would emit for these steps begin (their onset,
    the ``event_time`` of the record), for one user's steps in order, one step per window.

    >>> calm, joy = [0.9, 0.1], [0.1, 0.9]
    >>> onsets(np.array([calm] * 4 + [joy] * 4), np.zeros(8), ["calm", "joy"])
    [4]
    """
    detector = ChangeDetector("evaluation", labels, "evaluation", config)
    found = []
    for step, (probs, change) in enumerate(zip(class_probs, change_probs)):
        point = detector.update(DetectorStep(probs, float(change), probs, step, step + 1))
        if point is not None:
            found.append(point.event_time_ms - 1)
    return found
