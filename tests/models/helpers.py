"""Tiny configs and random steps shared by the model tests."""

from __future__ import annotations

import numpy as np

from moodshift.models.config import ModelConfig
from moodshift.models.inputs import Step

TINY = ModelConfig(text_buckets=256, text_dim=8, image_dim=16, audio_mels=4, context_length=5,
                   context_hidden=8, common_dim=8, hidden_size=16, stage2_hidden=8)


def random_step(rng: np.random.Generator, config: ModelConfig = TINY) -> Step:
    """One step with each modality present at random (text most often)."""
    step: dict = {"time": rng.normal(size=config.time_dim).astype(np.float32)}
    if rng.random() < 0.8:
        step["text_ids"] = rng.integers(0, config.text_buckets, rng.integers(0, 6)).tolist()
    if rng.random() < 0.5:
        step["image"] = rng.normal(size=(int(rng.integers(1, 3)), config.image_dim))
    if rng.random() < 0.5:
        step["audio"] = rng.normal(size=config.audio_dim)
    if rng.random() < 0.5:
        step["context"] = rng.normal(size=(config.context_length, len(config.context_channels)))
    return Step(**step)


def random_sequences(rng: np.random.Generator, users: int, length: int, config: ModelConfig = TINY):
    return [[random_step(rng, config) for _ in range(length)] for _ in range(users)]
