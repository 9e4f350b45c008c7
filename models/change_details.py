"""What a change point says besides "from → to": what drove it, and the named emotions around it.

:class:`StepEvidence` is one step's leave-one-out effects (the worker measures them,
pipeline/stream/evidence.py); a streak of steps adds them up into the :class:`ChangeEvidence` of the
change point it confirms. :class:`NamedEmotionShift` holds the named emotions (e.g. Plutchik's eight)
before and after a change.

>>> tally = largest_effects({}, {"p1": 0.2, "p2": 0.5})
>>> tally = largest_effects(tally, {"p1": 0.3, "p3": -0.1})
>>> ChangeEvidence.from_sums(tally, {"text": 0.8, "image": -0.2}, steps=2).to_json_dict()
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
    """Evidence of a change point, over the steps of its confirming streak that had evidence.

    ``events``: the events that raised the new emotion's probability most (event id, largest effect
    over the streak's windows), largest first; ``modality_effects``: mean effect of each modality;
    ``modality_shares``: the positive effects as shares of their sum (a modality that pushed against
    the change gets 0; all 0 when none pushed toward it).
    """

    events: tuple[tuple[str, float], ...]
    modality_effects: Mapping[str, float]
    modality_shares: Mapping[str, float]

    @classmethod
    def from_sums(cls, event_effects: Mapping[str, float], modality_effect_sums: Mapping[str, float],
                  steps: int) -> ChangeEvidence:
        """From the largest effect per event and the modalities' effects summed over ``steps`` steps."""
        effects = {m: total / steps for m, total in sorted(modality_effect_sums.items())}
        pushed = sum(max(effect, 0.0) for effect in effects.values())
        shares = {m: (max(effect, 0.0) / pushed if pushed > 0 else 0.0) for m, effect in effects.items()}
        return cls(tuple(_by_effect(event_effects)), effects, shares)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "events": [{"event_id": event_id, "effect": effect} for event_id, effect in self.events],
            "modality_effects": dict(self.modality_effects),
            "modality_shares": dict(self.modality_shares),
        }


def largest_effects(kept: Mapping[str, float], new: Mapping[str, float]) -> dict[str, float]:
    """The :data:`EVIDENCE_EVENTS` largest effects of ``kept`` and ``new`` (an event in both keeps its
    larger one): what a streak stores, so a user's record stays small however long the streak."""
    merged = dict(kept)
    for event_id, effect in new.items():
        merged[event_id] = max(effect, merged.get(event_id, effect))
    return dict(_by_effect(merged)[:EVIDENCE_EVENTS])


def _by_effect(effects: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(effects.items(), key=lambda item: (-item[1], item[0]))


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
