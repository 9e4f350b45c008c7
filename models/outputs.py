"""The model's outputs on posts and timelines as numpy arrays, for evaluation and for tuning after training.

``run_on_timelines`` runs whole timelines through the training forward (what evaluation scores per
step); ``run_on_posts`` takes each post alone as a user's first step (per-post scores, and what a new
user's first post gets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from moodshift.models.datasets.timelines import Timeline
from moodshift.models.inputs import SequenceInputs, Step
from moodshift.models.model import MoodshiftModel
from moodshift.models.timefeatures import time_features


@dataclass(frozen=True)
class StepOutputs:
    """One timeline's stage-1 probabilities [T, C] and change probabilities [T]."""

    class_probs: np.ndarray
    change_probs: np.ndarray

    def __len__(self) -> int:
        return len(self.change_probs)


@dataclass
class TimelineOutputs:
    """A model's per-step outputs on each timeline: stage-1 probabilities [T, C], change prob [T]."""

    stage1: list[np.ndarray]
    change: list[np.ndarray]
    # [T, n_features]: the change classifier's features (models/change_classifier.py); empty without one
    change_features: list[np.ndarray] = field(default_factory=list)

    def per_timeline(self) -> list[StepOutputs]:
        return [StepOutputs(stage1, change) for stage1, change in zip(self.stage1, self.change)]


@dataclass(frozen=True)
class PostOutputs:
    """The model on posts each taken alone: stage-1 probabilities [N, C], named-emotion scores [N, K]."""

    stage1: np.ndarray
    named: np.ndarray | None


@torch.no_grad()
def run_on_posts(model: MoodshiftModel, text_ids: Sequence[Sequence[int]], device: torch.device) -> PostOutputs:
    """Each post (its text ids) as a user's first and only step (text and time only)."""
    model.eval()
    first = time_features(1_400_000_000.0, None)
    probs, named = [], []
    for start in range(0, len(text_ids), 1024):
        steps = [[Step(time=first, text_ids=ids)] for ids in text_ids[start:start + 1024]]
        out = model(SequenceInputs.collate(steps, model.config).to(device))
        probs.append(out.stage1_probs[:, 0].cpu().numpy())
        if out.named_scores is not None:
            named.append(out.named_scores[:, 0].cpu().numpy())
    return PostOutputs(np.concatenate(probs), np.concatenate(named) if named else None)


@torch.no_grad()
def run_on_timelines(model: MoodshiftModel, timelines: Sequence[Timeline], device: torch.device) -> TimelineOutputs:
    model.eval()
    outputs = TimelineOutputs([], [])
    for start in range(0, len(timelines), 64):
        chunk = timelines[start:start + 64]
        out = model(SequenceInputs.collate([t.steps for t in chunk], model.config).to(device))
        for row, timeline in enumerate(chunk):
            n = len(timeline.steps)
            outputs.stage1.append(out.stage1_probs[row, :n].cpu().numpy())
            outputs.change.append(out.change_prob[row, :n].cpu().numpy())
            if out.change_features is not None:
                outputs.change_features.append(out.change_features[row, :n].cpu().numpy())
    return outputs
