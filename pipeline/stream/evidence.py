"""What drove a step: leave-one-out effects of a window's events and modalities.

For a step that may become part of a change point, :func:`probe_steps` lists the same step from the
same user state with one thing left out: each modality the step has (text, image, audio, context),
and each event whose text is in the window (its tokens removed; a lone text event is measured by
the text modality's probe, which leaves out the same tokens). :func:`step_evidence` turns the
model's outputs for those probes into a :class:`models.detector.StepEvidence`: how much the
probability of the emotion the step favours drops without each one. The probes never advance a
user's state; the processor runs them in one batched call.

Images and audio are kept in a window as sums, not per event, so their events are weighed as a
modality only; an event's own effect is measured through its text (the newest
:data:`MAX_PROBED_EVENTS` text events of a window).

>>> import numpy as np
>>> from moodshift.models.inputs import Step
>>> step = Step(time=np.zeros(6), text_ids=[1, 2, 3], context=np.zeros((5, 4)))
>>> probes = probe_steps(step, [("a", (1,)), ("b", (2, 3))])
>>> [(probe.kind, probe.name, probe.step.text_ids) for probe in probes]
[('modality', 'text', None), ('modality', 'context', [1, 2, 3]), ('event', 'a', [2, 3]), ('event', 'b', [1])]
>>> evidence = step_evidence([0.2, 0.8], 1, probes, [[0.9, 0.1], [0.3, 0.7], [0.5, 0.5], [0.6, 0.4]])
>>> {name: round(effect, 2) for name, effect in evidence.modalities.items()}
{'text': 0.7, 'context': 0.1}
>>> {name: round(effect, 2) for name, effect in evidence.events.items()}
{'a': 0.3, 'b': 0.4}
>>> [(probe.name, probe.also_event) for probe in probe_steps(step, [("a", (1, 2, 3))])]  # one probe serves both
[('text', 'a'), ('context', None)]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from moodshift.models.change_details import StepEvidence
from moodshift.models.inputs import Step

#: Text events probed per step, newest first (each costs one model step, only on streak steps).
MAX_PROBED_EVENTS = 32

_MODALITY_FIELDS = {"text": "text_ids", "image": "image", "audio": "audio", "context": "context"}


@dataclass(frozen=True)
class Probe:
    """The step with one modality (``kind="modality"``) or one event's text (``"event"``) left out;
    ``also_event``: the event a text probe also measures (the window's only text event)."""

    kind: str
    name: str
    step: Step
    also_event: str | None = None


def probe_steps(step: Step, text_events: Sequence[tuple[str, Sequence[int]]]) -> list[Probe]:
    """The leave-one-out variants of ``step``; ``text_events`` are ``(event id, tokens)`` in the
    order their tokens appear in ``step.text_ids``."""
    lone = text_events[0][0] if len(text_events) == 1 else None
    probes = [Probe("modality", name, dataclasses.replace(step, **{field: None}), lone if name == "text" else None)
              for name, field in _MODALITY_FIELDS.items() if getattr(step, field) is not None]
    if len(text_events) < 2:
        return probes
    start = max(0, len(text_events) - MAX_PROBED_EVENTS)
    for index in range(start, len(text_events)):
        others = [token for i, (_, tokens) in enumerate(text_events) if i != index for token in tokens]
        probes.append(Probe("event", text_events[index][0], dataclasses.replace(step, text_ids=others or None)))
    return probes


def step_evidence(class_probs: Sequence[float], label: int, probes: Sequence[Probe],
                  probe_class_probs: Sequence[Sequence[float]]) -> StepEvidence:
    """Effects on the probability of class ``label``: the step's own (``class_probs``) minus each probe's."""
    events, modalities = {}, {}
    for probe, probs in zip(probes, probe_class_probs, strict=True):
        effect = float(class_probs[label]) - float(probs[label])
        (modalities if probe.kind == "modality" else events)[probe.name] = effect
        if probe.also_event is not None:
            events[probe.also_event] = effect
    return StepEvidence(events=events, modalities=modalities)
