"""The training objective: Euclidean emotion distance + stage-1 + (weighted) stage-2 cross-entropy,
and, when the model scores named emotions, binary cross-entropy against the weak labeller's scores.

>>> import torch
>>> from moodshift.models.config import ModelConfig
>>> from moodshift.models.model import StepOutputs
>>> config = ModelConfig()
>>> targets = Targets.collate([[(0, 0.9, 0, 0), (2, 1.0, 1, 2)]], n_labels=3)
>>> [round(v, 3) for v in targets.emotion[0, 0].tolist()]
[0.9, 0.05, 0.05]
>>> outputs = StepOutputs(torch.rand(1, 2, 3), torch.randn(1, 2, 3), torch.randn(1, 2), torch.randn(1, 2, 9))
>>> total, parts = moodshift_loss(outputs, targets, config)
>>> sorted(parts), bool(total > 0)
(['change', 'emotion', 'stage1', 'transition'], True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from moodshift.models.config import ModelConfig
from moodshift.models.model import StepOutputs


@dataclass
class Targets:
    """What each step of B padded sequences should produce."""

    emotion: torch.Tensor  # [B, T, labels] target emotion distribution
    label: torch.Tensor  # [B, T] long: the post's label (stage 1)
    change: torch.Tensor  # [B, T] float: 1 where the user's emotion regime has just changed
    transition: torch.Tensor  # [B, T] long: from * labels + to (diagonal = no change)
    step_mask: torch.Tensor  # [B, T] bool: real steps
    named: torch.Tensor | None = None  # [B, T, named] weak scores in [0, 1]; None: not trained
    named_mask: torch.Tensor | None = None  # [B, T] bool: steps whose post has weak scores

    def to(self, device: str | torch.device) -> "Targets":
        return Targets(*(None if (value := getattr(self, name)) is None else value.to(device)
                         for name in self.__dataclass_fields__))

    @classmethod
    def collate(cls, sequences: Sequence[Sequence[tuple[int, float, int, int]]], n_labels: int,
                named: Sequence[np.ndarray] | None = None) -> "Targets":
        """Per step ``(label, confidence, change, transition)``; the label keeps ``confidence`` of
        the target emotion mass and the rest is shared by the other labels. ``named``: per
        sequence, its steps' weak named-emotion scores ``[T, named]``."""
        batch, length = len(sequences), max((len(s) for s in sequences), default=0)
        label = torch.zeros(batch, length, dtype=torch.long)
        confidence = torch.ones(batch, length)
        change = torch.zeros(batch, length)
        transition = torch.zeros(batch, length, dtype=torch.long)
        step_mask = torch.zeros(batch, length, dtype=torch.bool)
        for b, sequence in enumerate(sequences):
            if not sequence:
                continue
            rows = torch.tensor(sequence, dtype=torch.float64)
            n = len(sequence)
            label[b, :n] = rows[:, 0].long()
            confidence[b, :n] = rows[:, 1].float()
            change[b, :n] = rows[:, 2].float()
            transition[b, :n] = rows[:, 3].long()
            step_mask[b, :n] = True
        rest = (1.0 - confidence) / (n_labels - 1)
        emotion = rest[..., None].expand(batch, length, n_labels).clone()
        emotion.scatter_(-1, label[..., None], confidence[..., None])
        named_targets = named_mask = None
        if named is not None:  # NaN rows: posts the weak labeller did not score
            width = max((len(scores[0]) for scores in named if scores is not None and len(scores)), default=0)
            named_targets = torch.full((batch, length, width), float("nan"))
            for b, scores in enumerate(named):
                if scores is not None:
                    named_targets[b, :len(scores)] = torch.as_tensor(np.asarray(scores, dtype=np.float32))
            named_mask = step_mask & ~named_targets.isnan().any(-1)
            named_targets = named_targets.nan_to_num(0.0)
        return cls(emotion, label, change, transition, step_mask, named_targets, named_mask)


def moodshift_loss(outputs: StepOutputs, targets: Targets, config: ModelConfig
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the four terms, averaged over real steps; also each term's value."""
    mask = targets.step_mask
    # Euclidean (not squared) distance; the epsilon keeps its gradient finite at zero distance.
    distance = ((outputs.emotion - targets.emotion).pow(2).sum(-1) + 1e-8).sqrt()
    stage1 = F.cross_entropy(outputs.stage1_logits[mask], targets.label[mask])
    change = F.binary_cross_entropy_with_logits(
        outputs.change_logit[mask], targets.change[mask],
        pos_weight=torch.tensor(config.change_pos_weight, device=mask.device))
    transition = F.cross_entropy(outputs.transition_logits[mask], targets.transition[mask])
    parts = {"emotion": distance[mask].mean(), "stage1": stage1, "change": change, "transition": transition}
    total = (config.weight_emotion * parts["emotion"] + config.weight_stage1 * stage1
             + config.weight_change * change + config.weight_transition * transition)
    if outputs.named_logits is not None and targets.named_mask is not None and bool(targets.named_mask.any()):
        scored = targets.named_mask
        parts["named"] = F.binary_cross_entropy_with_logits(outputs.named_logits[scored], targets.named[scored])
        total = total + config.weight_named * parts["named"]
    return total, {name: float(value.detach()) for name, value in parts.items()}
