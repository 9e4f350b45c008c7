"""The end-to-end benchmark's inputs: a model checkpoint, context records, images and users' posts.

Everything is generated, deterministic and offline:

- the model has the method's shapes (hidden 256, two LSTM layers) with a **ResNet-18** image
  backbone (512-d features) instead of the default ResNet-101: on 2 CPU cores ResNet-101 encodes
  only a few images per second. Weights are random (``random_backbone``): throughput does not
  depend on them;
- context: a month of daily weather (one location) and market bars (one symbol) up to now;
- images: small generated JPEG and PNG files in the media store, referenced by the posts (claim check);
- posts: user ``k % users`` writes the ``k``-th post, so each user posts every ``users / rate`` seconds.

>>> workload = Workload("text", users=3)
>>> [workload.post(k, 1_700_000_000_000).user_id for k in range(4)]
['text-u0', 'text-u1', 'text-u2', 'text-u0']
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import torch
from torchvision.io import encode_jpeg, encode_png

from moodshift.connectors import topics
from moodshift.connectors.media import MediaStore
from moodshift.connectors.record import Record
from moodshift.connectors.schemas import MarketTick, MediaRef, Post, WeatherObservation
from moodshift.models.checkpoint import CheckpointMeta, save_checkpoint
from moodshift.models.config import ModelConfig
from moodshift.models.model import build_model

BACKBONE = "resnet18"
LOCATION = "bench-city"
SYMBOL = "^GSPC"
WORDS = ("great", "sad", "angry", "love", "win", "terrible", "happy", "bad", "rain", "stocks", "down",
         "up", "sunny", "tired", "excited", "#monday", "@friend", "🙂", "😡", "again")


def write_checkpoint(path: Path) -> Path:
    """A randomly initialised model of the method's shapes, with the ResNet-18 image pathway."""
    config = ModelConfig(image_backbone=BACKBONE, image_dim=512)
    save_checkpoint(path, build_model(config, seed=0),
                    CheckpointMeta.create(config, training_data_hash="benchmark", random_backbone=True))
    return path


def context_records(now: datetime, days: int = 30) -> list[tuple[str, Record]]:
    """(logical topic, record): two weather observations and one market bar a day, for the ``days``
    days before ``now``'s (a step sees the days before its own)."""
    rng = np.random.default_rng(0)
    records: list[tuple[str, Record]] = []
    close = 5000.0
    for day in range(-days, 0):
        midnight = (now + timedelta(days=day)).replace(hour=0, minute=0, second=0, microsecond=0)
        for hour, temperature in ((6, 8 + rng.normal()), (15, 18 + rng.normal())):
            records.append((topics.WEATHER, WeatherObservation(
                location_id=LOCATION, latitude=48.1, longitude=11.6, kind="hourly",
                observed_time=midnight + timedelta(hours=hour), temperature_c=round(float(temperature), 2))))
        close *= float(np.exp(rng.normal(0, 0.01)))
        records.append((topics.MARKET, MarketTick(
            symbol=SYMBOL, observed_time=midnight + timedelta(hours=21), open=close, high=close * 1.01,
            low=close * 0.99, close=close, volume=int(3e9 + rng.integers(0, 1e9)), interval="1d",
            source="benchmark")))
    return records


def write_images(store: MediaStore, count: int, size: int = 96) -> list[MediaRef]:
    """``count`` distinct small images (smooth colour fields with noise), alternately JPEG and PNG."""
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    refs = []
    for k in range(count):
        colour = rng.uniform(0, 255, size=(3, 1, 1)).astype(np.float32)
        field_ = colour * (0.5 + 0.5 * ramp[None, :, None] * ramp[None, None, :])
        pixels = np.clip(field_ + rng.normal(0, 12, (3, size, size)), 0, 255).astype(np.uint8)
        tensor = torch.from_numpy(pixels)
        if k % 2:
            refs.append(store.put(encode_png(tensor).numpy().tobytes(), "image/png"))
        else:
            refs.append(store.put(encode_jpeg(tensor, quality=85).numpy().tobytes(), "image/jpeg"))
    return refs


@dataclass(frozen=True)
class Workload:
    """Posts of ``users`` users, round robin; with ``images``, every post carries one of them."""

    name: str
    users: int
    images: tuple[MediaRef, ...] = field(default=(), repr=False)

    def user_id(self, k: int) -> str:
        return f"{self.name}-u{k % self.users}"

    def post(self, k: int, event_time_ms: int) -> Post:
        """The ``k``-th post of the stream, at ``event_time_ms``; its text depends on ``k`` only."""
        media = (self.images[k % len(self.images)],) if self.images else ()
        return Post(event_id=f"{self.name}-{k}", user_id=self.user_id(k),
                    event_time=datetime.fromtimestamp(event_time_ms / 1000, timezone.utc), text=post_text(k),
                    media=media, language="en", source="benchmark")


@functools.lru_cache(maxsize=2**18)
def post_text(k: int) -> str:
    """The ``k``-th post's text: 6-19 words. Remembered: drawing them takes 60 µs (numpy seeds a
    generator per post), which a paced producer spends before its clock starts (:func:`make_texts`)."""
    rng = np.random.default_rng(k)
    return " ".join(rng.choice(WORDS, int(rng.integers(6, 20))))


def make_texts(start_k: int, count: int) -> None:
    """Draw the texts of posts ``start_k ...`` now, so that making those posts later is cheap."""
    for k in range(start_k, start_k + count):
        post_text(k)
