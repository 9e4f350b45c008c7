"""Batched model inputs, built from plain per-step values.

One *step* is what a user posted in one window: the hashed tokens of its text, the mean-pooled
image/frame features, the audio summary, time features, and the recent external series (already
normalised). Every modality may be missing; masks say which are present, and the model replaces a
missing modality by a learned "missing" vector (never zeros pretending to be data).

A step is a :class:`Step`: training timelines and the worker's windows build the same type.

>>> from moodshift.models.config import ModelConfig
>>> config = ModelConfig(image_dim=4, audio_mels=2, context_length=3)
>>> steps = [Step(time=np.zeros(6), text_ids=[1, 2, 3]),
...          Step(time=np.zeros(6), image=np.ones((2, 4)), context=np.zeros((3, 4)))]
>>> batch = StepInputs.collate(steps, config)
>>> batch.batch_size, batch.text_offsets.tolist(), batch.text_mask.tolist(), batch.image_mask.tolist()
(2, [0, 3], [True, False], [False, True])
>>> seq = SequenceInputs.collate([steps, steps[:1]], config)
>>> seq.lengths.tolist(), seq.max_len, seq.step_mask.tolist()
([2, 1], 2, [[True, True], [True, False]])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from moodshift.models.config import ModelConfig



@dataclass(frozen=True)
class Step:
    """One user's window as the model takes it. Every modality but ``time`` may be None: missing."""

    time: np.ndarray  # [time_dim]: models.timefeatures.time_features
    text_ids: Sequence[int] | None = None  # hashed token ids: models.text.TextHasher
    image: np.ndarray | None = None  # [image_dim], or [k, image_dim] for k images (their mean is used)
    audio: np.ndarray | None = None  # [audio_dim]: models.audio.audio_summary
    context: np.ndarray | None = None  # [context_length, n_channels], normalised


@dataclass
class StepInputs:
    """One step for each of B users (or B*T flattened steps inside :class:`SequenceInputs`)."""

    text_ids: torch.Tensor  # [N] long: every step's token ids, concatenated
    text_offsets: torch.Tensor  # [B] long: where each step's bag starts in text_ids
    text_mask: torch.Tensor  # [B] bool
    image: torch.Tensor  # [B, image_dim]: mean of the window's image/frame features
    image_mask: torch.Tensor  # [B] bool
    audio: torch.Tensor  # [B, audio_dim]
    audio_mask: torch.Tensor  # [B] bool
    time: torch.Tensor  # [B, time_dim]
    context: torch.Tensor  # [B, context_length, n_channels], normalised
    context_mask: torch.Tensor  # [B] bool

    @property
    def batch_size(self) -> int:
        return len(self.text_offsets)

    def to(self, device: str | torch.device) -> "StepInputs":
        return dataclasses.replace(
            self, **{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)}
        )

    @classmethod
    def collate(cls, steps: Sequence[Step | None], config: ModelConfig) -> "StepInputs":
        """Stack steps; a ``None`` step is padding (everything missing, time zero)."""
        n = len(steps)
        image = np.zeros((n, config.image_dim), np.float32)
        audio = np.zeros((n, config.audio_dim), np.float32)
        time = np.zeros((n, config.time_dim), np.float32)
        context = np.zeros((n, config.context_length, len(config.context_channels)), np.float32)
        masks = {name: np.zeros(n, bool) for name in ("text", "image", "audio", "context")}
        ids: list[int] = []
        offsets = np.zeros(n, np.int64)
        for row, step in enumerate(steps):
            offsets[row] = len(ids)
            if step is None:
                continue
            time[row] = step.time
            if step.text_ids is not None:
                ids.extend(step.text_ids)
                masks["text"][row] = True
            if step.image is not None:
                features = np.asarray(step.image, np.float32)
                image[row] = features.mean(axis=0) if features.ndim == 2 else features
                masks["image"][row] = len(features) > 0
            for name, value, target in (("audio", step.audio, audio), ("context", step.context, context)):
                if value is not None:
                    target[row] = value
                    masks[name][row] = True
        return cls(
            text_ids=torch.tensor(ids, dtype=torch.long),
            text_offsets=torch.from_numpy(offsets),
            text_mask=torch.from_numpy(masks["text"]),
            image=torch.from_numpy(image),
            image_mask=torch.from_numpy(masks["image"]),
            audio=torch.from_numpy(audio),
            audio_mask=torch.from_numpy(masks["audio"]),
            time=torch.from_numpy(time),
            context=torch.from_numpy(context),
            context_mask=torch.from_numpy(masks["context"]),
        )


def concat_bags(bags: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, offsets)``: bags of ids laid end to end, as :class:`StepInputs` holds text ids."""
    ids = torch.tensor([i for bag in bags for i in bag], dtype=torch.long)
    return ids, torch.tensor(np.cumsum([0] + [len(bag) for bag in bags[:-1]]), dtype=torch.long)


def bag_index(ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """[N] long: the bag (row) each of ``ids`` belongs to, bags starting at ``offsets`` ([B])."""
    starts = offsets[1:][offsets[1:] < len(ids)]  # empty bags repeat an offset: count each
    return torch.zeros(len(ids), dtype=torch.long, device=ids.device).index_add_(
        0, starts, torch.ones_like(starts)).cumsum(0)


@dataclass
class SequenceInputs:
    """T steps for each of B users, for training: the steps flattened row-major (user, then time).

    Users shorter than the longest are padded at the end; ``lengths`` says how many steps are real.
    """

    steps: StepInputs  # B * max_len rows, row = user * max_len + t
    lengths: torch.Tensor  # [B] long

    @property
    def batch_size(self) -> int:
        return len(self.lengths)

    @property
    def max_len(self) -> int:
        return self.steps.batch_size // max(self.batch_size, 1)

    @property
    def step_mask(self) -> torch.Tensor:
        """[B, T] bool: True where a step is real, not padding."""
        positions = torch.arange(self.max_len, device=self.lengths.device)
        return positions[None, :] < self.lengths[:, None]

    def to(self, device: str | torch.device) -> "SequenceInputs":
        return SequenceInputs(self.steps.to(device), self.lengths.to(device))

    @classmethod
    def collate(cls, sequences: Sequence[Sequence[Step]], config: ModelConfig) -> "SequenceInputs":
        max_len = max((len(seq) for seq in sequences), default=0)
        rows = [seq[t] if t < len(seq) else None for seq in sequences for t in range(max_len)]
        lengths = torch.tensor([len(seq) for seq in sequences], dtype=torch.long)
        return cls(StepInputs.collate(rows, config), lengths)
