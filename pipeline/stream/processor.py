"""The worker's logic for a batch of user events, in plain Python: windows → model steps → changes.

:class:`EmotionProcessor` takes a batch of :class:`UserEvent` (features already extracted) and the
stored records of the users in it (:class:`pipeline.stream.records.UserRecord`), and returns the
updated records with everything to publish: change points, late events to dead-letter, optional
per-step emotions. So the faust layer only loads records from its table, calls
:meth:`EmotionProcessor.process` off the event loop, and writes records and outputs back.

Per user, work per step is O(1): the record holds the open panes, the LSTM state and the detector
state, never the history.

>>> from moodshift.models.config import ModelConfig
>>> from moodshift.models.model import build_model
>>> from moodshift.pipeline.stream.inference import InferenceEngine
>>> engine = InferenceEngine(build_model(ModelConfig(image_dim=4, hidden_size=8, common_dim=8), seed=0))
>>> processor = EmotionProcessor(engine, WindowSpec(60_000, 60_000, 0))
>>> events = [UserEvent("u1", f"e{i}", i * 60_000, ModalityFeatures(tokens=[i])) for i in range(4)]
>>> result = processor.process(events, records={})
>>> [step.window_end_ms for step in result.steps], sorted(result.records)
([60000, 120000, 180000], ['u1'])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from moodshift.models.inputs import Step
from moodshift.models.timefeatures import time_features
from moodshift.pipeline.stream.context import DailyContext
from moodshift.models.change_details import ChangeEvidence, StepEvidence
from moodshift.models.detector import ChangeDetector, ChangePoint, DetectorConfig, DetectorStep, iso_utc
from moodshift.pipeline.stream.evidence import probe_steps, step_evidence
from moodshift.pipeline.stream.inference import InferenceEngine, StepRequest, StepResult
from moodshift.pipeline.stream.aggregate import ModalityAggregate, ModalityFeatures
from moodshift.pipeline.stream.records import UserRecord
from moodshift.pipeline.stream.windows import ClosedWindow, LateEvent, UserWindows, WindowSpec


@dataclass(frozen=True)
class UserEvent:
    """One post or video of a user, with its features extracted."""

    user_id: str
    event_id: str
    event_time_ms: int
    features: ModalityFeatures
    # Where the event was read ("posts/3") and its offset there. An event at or below the offset
    # the user's record has applied from that source is a replay (after a crash, a rebalance) and is
    # skipped, so a re-read event never counts twice in a window. None: not from Kafka, never skipped.
    source: str | None = None
    offset: int | None = None


@dataclass(frozen=True)
class EmotionStep:
    """What one window step produced, for the optional per-step topic and for timelines."""

    user_id: str
    window_start_ms: int
    window_end_ms: int
    emotion: list[float]
    class_probs: list[float]
    change_prob: float
    modalities: tuple[str, ...]
    context_present: bool
    named: list[float] = field(default_factory=list)  # the named emotions' scores (empty: none)

    def to_json_dict(self, labels: Sequence[str], model_version: str,
                     named_emotions: Sequence[str] = ()) -> dict[str, Any]:
        record = {
            "schema_version": 1, "user_id": self.user_id,
            "window_start": iso_utc(self.window_start_ms), "window_end": iso_utc(self.window_end_ms),
            "emotion": self.emotion, "class_probs": dict(zip(labels, self.class_probs)),
            # The first largest, as numpy's argmax, which took half of building this dict (on a list of 3).
            "predicted": labels[max(range(len(self.class_probs)), key=self.class_probs.__getitem__)],
            "change_prob": self.change_prob,
            "modalities": list(self.modalities), "context_present": self.context_present,
            "model_version": model_version,
        }
        if self.named:
            record["emotions"] = dict(zip(named_emotions, self.named))
        return record


@dataclass
class ProcessResult:
    records: dict[str, UserRecord]  # updated records of the users in the batch
    steps: list[EmotionStep] = field(default_factory=list)
    change_points: list[ChangePoint] = field(default_factory=list)
    late_events: list[LateEvent] = field(default_factory=list)
    events_windowed: int = 0  # events added to windows (not late, not replayed)
    events_replayed: int = 0  # events skipped: their user's record had applied them already
    model_seconds: float = 0.0


class EmotionProcessor:
    """Windows, batched incremental model steps and change detection for batches of events."""

    def __init__(
        self,
        engine: InferenceEngine,
        spec: WindowSpec,
        context: DailyContext | None = None,
        detector_config: DetectorConfig | None = None,
    ) -> None:
        self.engine = engine
        self.spec = spec
        self.context = context
        self.detector_config = detector_config or DetectorConfig()

    def process(
        self, events: Sequence[UserEvent], records: Mapping[str, UserRecord | None], flush: bool = False
    ) -> ProcessResult:
        """Add ``events`` (in arrival order) to their users' windows and step every window that closes.

        ``records`` holds the stored record of each user in ``events`` (missing or None: new user).
        ``flush`` closes every open window afterwards (end of a bounded replay).
        """
        windows = {user: self._windows(user, records.get(user)) for user in {e.user_id for e in events}}
        if flush:
            windows.update({u: self._windows(u, r) for u, r in records.items() if u not in windows})
        result = ProcessResult(records={})
        state = {user: dataclasses.replace(records.get(user) or UserRecord()) for user in windows}
        applied = {user: dict(state[user].applied) for user in windows}
        closed: list[ClosedWindow[ModalityAggregate]] = []
        # Arrival order, not sorted: whether an event is late must not depend on batch boundaries.
        for event in events:
            if event.source is not None and event.offset is not None:
                if event.offset <= applied[event.user_id].get(event.source, -1):
                    result.events_replayed += 1
                    continue
                applied[event.user_id][event.source] = event.offset
            outcome = windows[event.user_id].add(event.event_time_ms, event.event_id, event.features)
            if isinstance(outcome, LateEvent):
                result.late_events.append(outcome)
            else:
                result.events_windowed += 1
                closed.extend(outcome)
        if flush:
            for user_windows in windows.values():
                closed.extend(user_windows.flush())

        requests, contexts = [], []
        for window in closed:  # already in end order per user; rounds keep that order
            record = state[window.user_id]
            inputs, context_present = self._step_inputs(window, record.last_step_ms)
            requests.append(StepRequest(window.user_id, record.model, inputs))
            contexts.append(context_present)
            record.last_step_ms = window.end_ms
        results = self.engine.step(requests) if requests else []
        result.model_seconds = self.engine.last_call_seconds if requests else 0.0

        detectors = {user: self._detector(user, state[user].detector) for user in windows}
        confirming: list[int] = []  # the steps that confirmed each change point, in its order
        for index, (window, step_result, context_present) in enumerate(zip(closed, results, contexts)):
            if self._record_step(window, step_result, context_present, detectors, result):
                confirming.append(index)
            state[window.user_id].model = step_result.state
        evidence = self._evidence(closed, requests, results, confirming, result)
        result.change_points = [dataclasses.replace(point, evidence=ChangeEvidence.from_step(why))
                                for point, why in zip(result.change_points, evidence, strict=True)]
        for user in windows:
            state[user].windows = windows[user].to_dict()
            state[user].detector = detectors[user].to_dict()
            state[user].applied = applied[user]
            result.records[user] = state[user]
        return result

    # -- pieces ----------------------------------------------------------------------------------

    def _windows(self, user: str, record: UserRecord | None) -> UserWindows[ModalityAggregate]:
        if record and record.windows:
            # The user is the table key, whatever id the stored state names (a record copied or
            # moved under another key must not file its events under the old user).
            return UserWindows.from_dict(record.windows, self.spec, ModalityAggregate, user)
        return UserWindows(user, self.spec, ModalityAggregate)

    def _detector(self, user: str, data: dict[str, Any] | None) -> ChangeDetector:
        labels, version, named = self.engine.labels, self.engine.model_version, self.engine.named_emotions
        if data:
            return ChangeDetector.from_dict(data, labels, version, self.detector_config, named, user)
        return ChangeDetector(user, labels, version, self.detector_config, named)

    def _step_inputs(self, window: ClosedWindow[ModalityAggregate], last_step_ms: int | None) -> tuple[Step, bool]:
        aggregate = window.aggregate
        context, context_present = None, False
        if self.context is not None:
            values, context_present = self.context.series(window.end_ms)
            context = values if context_present else None
        return Step(
            time=time_features(window.end_ms / 1000, None if last_step_ms is None else last_step_ms / 1000),
            text_ids=aggregate.tokens or None, image=aggregate.image_mean, audio=aggregate.audio_mean,
            context=context,
        ), context_present

    def _evidence(self, closed: Sequence[ClosedWindow[ModalityAggregate]], requests: Sequence[StepRequest],
                  results: Sequence[StepResult], confirming: Sequence[int], result: ProcessResult) -> list[StepEvidence]:
        """Leave-one-out evidence (:mod:`pipeline.stream.evidence`) for the ``confirming`` steps (indexes
        into ``closed``), each probed from the state its step started from, all in one batched model
        call. Only confirming steps: on timelines with frequent changes about half of all steps start
        or extend a streak, and probing them all would multiply the model's work."""
        if not confirming:  # most batches
            return []
        state_before: list[bytes | None] = []  # per step: the user's model state before it
        latest: dict[str, bytes | None] = {}
        for window, request, step in zip(closed, requests, results):
            state_before.append(latest.get(window.user_id, request.state))
            latest[window.user_id] = step.state
        probes = [probe_steps(requests[index].inputs, closed[index].aggregate.text_events) for index in confirming]
        # Distinct ids: the engine chains the requests of one id as consecutive steps of one user.
        probe_requests = [StepRequest(f"probe-{index}-{n}", state_before[index], probe.step)
                          for index, step_probes in zip(confirming, probes) for n, probe in enumerate(step_probes)]
        if not probe_requests:
            return [StepEvidence() for _ in confirming]
        probe_results = iter(self.engine.step(probe_requests))
        result.model_seconds += self.engine.last_call_seconds
        evidence = []
        for index, step_probes in zip(confirming, probes):
            probs = results[index].stage1_probs
            evidence.append(step_evidence(probs, int(np.argmax(probs)), step_probes,
                                          [next(probe_results).stage1_probs for _ in step_probes]))
        return evidence

    def _record_step(self, window: ClosedWindow[ModalityAggregate], step: StepResult, context_present: bool,
                     detectors: dict[str, ChangeDetector], result: ProcessResult) -> bool:
        """Add the step to ``result`` and feed it to the user's detector; whether it confirmed a change."""
        modalities = window.aggregate.modalities + (("context",) if context_present else ())
        result.steps.append(EmotionStep(
            window.user_id, window.start_ms, window.end_ms, step.emotion, step.stage1_probs,
            step.change_prob, modalities, context_present, step.named,
        ))
        point = detectors[window.user_id].update(DetectorStep(
            step.stage1_probs, step.change_prob, step.emotion, window.start_ms, window.end_ms, modalities, step.named,
        ))
        if point is not None:
            result.change_points.append(point)
        return point is not None
