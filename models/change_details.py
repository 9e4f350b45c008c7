"""What a change point says besides "from → to": what drove it, and the named emotions around it.

:class:`StepEvidence` is one step's leave-one-out effects (the worker measures them for the window
that confirms a change, pipeline/stream/evidence.py); :class:`ChangeEvidence` is what the change
point publishes of them. :class:`NamedEmotionShift` holds the named emotions (e.g. Plutchik's eight)
before and after a change.

>>> step = StepEvidence(events={"p1": 0.3, "p2": 0.5, "p3": -0.1}, modalities={"text": 0.4, "image": -0.1})
>>> ChangeEvidence.from_step(step).to_json_dict()
{'events': [{'event_id': 'p2', 'effect': 0.5}, {'event_id': 'p1', 'effect': 0.3}, {'event_id': 'p3', 'effect': -0.1}], 'modality_effects': {'image': -0.1, 'text': 0.4}, 'modality_shares': {'image': 0.0, 'text': 1.0}}
>>> shift = NamedEmotionShift({"joy": 0.1, "fear": 0.6}, {"joy": 0.7, "fear": 0.2})
>>> shift.rose, shift.fell
('joy', 'fear')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class StepEvidence:
    """What drove one step toward the emotion it favours: how much the probability of that emotion
    drops when one event (``events``, by event id) or one modality (``modalities``) is left out.

    A positive effect pushed the step toward the emotion, a negative one against it.
    """

    events: Mapping[str, float] = field(default_factory=dict)
    modalities: Mapping[str, float] = field(default_factory=dict)


#: How many events a change point names as its evidence (largest effect first).
EVIDENCE_EVENTS = 5


@dataclass(frozen=True)
class ChangeEvidence:
    """Evidence of a change point, from the window that confirmed it.

    ``events``: the :data:`EVIDENCE_EVENTS` events with the largest effect on the new emotion's
    probability, largest first; ``modality_effects``: each modality's effect; ``modality_shares``: the
    positive effects as shares of their sum (a modality that pushed against the change gets 0; all 0
    when none pushed toward it).
    """

    events: tuple[tuple[str, float], ...]
    modality_effects: Mapping[str, float]
    modality_shares: Mapping[str, float]

    @classmethod
    def from_step(cls, step: StepEvidence) -> ChangeEvidence:
        effects = dict(sorted(step.modalities.items()))
        pushed = sum(max(effect, 0.0) for effect in effects.values())
        shares = {m: (max(effect, 0.0) / pushed if pushed > 0 else 0.0) for m, effect in effects.items()}
        events = sorted(step.events.items(), key=lambda item: (-item[1], item[0]))[:EVIDENCE_EVENTS]
        return cls(tuple(events), effects, shares)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "events": [{"event_id": event_id, "effect": effect} for event_id, effect in self.events],
            "modality_effects": dict(self.modality_effects),
            "modality_shares": dict(self.modality_shares),
        }


@dataclass(frozen=True)
class NamedEmotionShift:
    """The named emotions before a change (the previous emotion's running mean) and after it (the
    mean over the confirming streak), and which rose and which fell the most."""

    before: Mapping[str, float]
    after: Mapping[str, float]

    @property
    def rose(self) -> str:
        return max(self.after, key=lambda name: (self.after[name] - self.before[name], name))

    @property
    def fell(self) -> str:
        return min(self.after, key=lambda name: (self.after[name] - self.before[name], name))

    def to_json_dict(self) -> dict[str, Any]:
        return {"before": dict(self.before), "after": dict(self.after), "rose": self.rose, "fell": self.fell}
