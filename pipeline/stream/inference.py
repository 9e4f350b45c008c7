"""Many users' incremental steps → one batched model call, state in and state out as bytes.

The pipeline keeps each user's model state as the compact bytes of :mod:`models.state` (in a
changelog-backed table); :class:`InferenceEngine` turns a list of :class:`StepRequest` into one
``model.step`` call per *round* and returns a :class:`StepResult` per request, in request order.
A user may appear more than once (several windows closed at once): their steps go to successive
rounds, so each sees the state the previous one produced — per-user order is kept, and each step
costs O(1) whatever the user's history.

>>> import numpy as np
>>> from moodshift.models.config import ModelConfig
>>> from moodshift.models.model import build_model
>>> engine = InferenceEngine(build_model(ModelConfig(image_dim=4, hidden_size=8, common_dim=8), seed=0))
>>> from moodshift.models.inputs import Step
>>> step = Step(time=np.zeros(6, np.float32), text_ids=[1, 2])
>>> first, second = engine.step([StepRequest("u1", None, step), StepRequest("u1", None, step)])
>>> from moodshift.models.state import UserStates
>>> int(UserStates.from_bytes(second.state).steps[0]), len(engine.step([StepRequest("u1", second.state, step)])[0].stage1_probs)
(2, 3)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from moodshift.models.checkpoint import CheckpointMeta, load_checkpoint
from moodshift.models.inputs import Step, StepInputs
from moodshift.models.model import MoodshiftModel
from moodshift.models.device import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRequest:
    """One user's step: their state bytes (None: a new user) and the step's plain inputs."""

    user_id: str
    state: bytes | None
    inputs: Step


@dataclass(frozen=True)
class StepResult:
    """The user's new state bytes and the step's outputs as plain values."""

    user_id: str
    state: bytes
    emotion: list[float]
    stage1_probs: list[float]
    change_prob: float
    named: list[float] = field(default_factory=list)  # scores of the model's named emotions, if any


class InferenceEngine:
    """Runs :meth:`MoodshiftModel.step` for batches of users, in inference mode."""

    def __init__(self, model: MoodshiftModel, meta: CheckpointMeta | None = None,
                 device: str | torch.device = "cpu", state_dtype: str = "float32") -> None:
        self.device = torch.device(device)
        self.state_dtype = state_dtype  # of the state bytes it returns (models.state.UserStates.to_bytes)
        self.model = model.to(self.device).eval()
        self.meta = meta
        self.config = model.config
        self.model_version = meta.model_version if meta else "untrained"
        self.last_call_seconds = 0.0

    @classmethod
    def from_checkpoint(cls, path: Path, device: str = "auto", state_dtype: str = "float32") -> "InferenceEngine":
        if not Path(path).exists():
            raise FileNotFoundError(
                f"no model checkpoint at {path}: train one with `moodshift train --preset quick` "
                "or set MOODSHIFT_MODEL_CHECKPOINT"
            )
        chosen = resolve_device(device)
        model, meta = load_checkpoint(path, map_location=chosen)
        log.info("loaded model %s on %s (random backbone: %s)", meta.model_version, chosen, meta.random_backbone)
        return cls(model, meta, chosen, state_dtype)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    @property
    def named_emotions(self) -> tuple[str, ...]:
        return self.config.named_emotions

    def step(self, requests: Sequence[StepRequest]) -> list[StepResult]:
        """One batched call per round; results in request order."""
        started = time.perf_counter()
        results: list[StepResult | None] = [None] * len(requests)
        latest: dict[str, bytes | None] = {}
        for round_indices in _rounds(requests):
            stored = [latest[requests[i].user_id] if requests[i].user_id in latest else requests[i].state
                      for i in round_indices]
            inputs = StepInputs.collate([requests[i].inputs for i in round_indices], self.config)
            with torch.inference_mode():
                blobs, _, outputs = self.model.step_stored(stored, inputs, self.state_dtype)
            stage1 = outputs.stage1_probs.float().cpu().numpy()
            emotion = outputs.emotion.float().cpu().numpy()
            change = outputs.change_prob.float().cpu().numpy()
            named = None if outputs.named_scores is None else outputs.named_scores.float().cpu().numpy()
            for row, i in enumerate(round_indices):
                latest[requests[i].user_id] = blobs[row]
                results[i] = StepResult(
                    user_id=requests[i].user_id, state=blobs[row], emotion=emotion[row].tolist(),
                    stage1_probs=stage1[row].tolist(), change_prob=float(change[row]),
                    named=[] if named is None else named[row].tolist(),
                )
        self.last_call_seconds = time.perf_counter() - started
        return results  # type: ignore[return-value]


def _rounds(requests: Sequence[StepRequest]) -> list[list[int]]:
    """Request indices split so each user appears at most once per round, in their order."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for i, request in enumerate(requests):
        k = seen.get(request.user_id, 0)
        seen[request.user_id] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    return rounds
