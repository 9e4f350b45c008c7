"""Posts and videos → :class:`pipeline.stream.aggregate.ModalityFeatures`, images batched through the backbone.

:class:`FeatureExtractor` reads media from the media store (connectors put it there; records carry
references only), decodes images with torchvision's decoders, encodes *all* images and frames of a
batch of events in one backbone call, and summarises audio tracks as log-mel statistics. A media
item that cannot be read or decoded is reported as a problem ``(reason, message)`` for the dead-letter
topic; the event keeps its other modalities.
"""

from __future__ import annotations

import io
import logging
from typing import Sequence

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image

from moodshift.connectors.media import MediaStore
from moodshift.connectors.schemas import MediaRef, Post, VideoClip
from moodshift.models.audio import audio_summary
from moodshift.models.image import ImageEncoder
from moodshift.models.text import TextHasher
from moodshift.pipeline.stream.inference import InferenceEngine
from moodshift.pipeline.settings import Settings
from moodshift.pipeline.stream.aggregate import ModalityFeatures

log = logging.getLogger(__name__)

Problem = tuple[str, str]  # (reason code, message)


class FeatureExtractor:
    """Extracts text, image/frame and audio features for batches of events."""

    def __init__(self, hasher: TextHasher, media: MediaStore, image_encoder: ImageEncoder | None,
                 audio_mels: int, image_batch_size: int = 32) -> None:
        self.hasher = hasher
        self.media = media
        self.image_encoder = image_encoder
        self.audio_mels = audio_mels
        self.image_batch_size = image_batch_size

    @classmethod
    def for_engine(cls, engine: InferenceEngine, settings: Settings) -> "FeatureExtractor":
        """The extractor matching the engine's checkpoint: its text hashing and image backbone."""
        config = engine.config
        random_backbone = bool(engine.meta and engine.meta.random_backbone)
        encoder = ImageEncoder(
            config.image_backbone,
            weights=None if random_backbone else str(settings.image_weights or "DEFAULT"),
            allow_random=random_backbone or settings.allow_random_backbone,
            device=engine.device,
        )
        if encoder.feature_dim != config.image_dim:
            raise ValueError(f"{config.image_backbone} gives {encoder.feature_dim}-d features, "
                             f"the model expects {config.image_dim}")
        media = MediaStore(settings.media_dir or settings.state_dir / "media")
        hasher = engine.meta.text_hasher() if engine.meta else TextHasher(config)
        return cls(hasher, media, encoder, config.audio_mels)

    def extract(self, events: Sequence[Post | VideoClip]) -> list[tuple[ModalityFeatures, list[Problem]]]:
        problems: list[list[Problem]] = [[] for _ in events]
        images: list[np.ndarray] = []
        owners: list[int] = []
        audio: list[np.ndarray | None] = [None] * len(events)
        tokens: list[list[int]] = [[] for _ in events]
        for i, event in enumerate(events):
            if isinstance(event, Post):
                tokens[i] = self.hasher.encode(event.text) if event.text else []
                refs = list(event.media)
            else:
                refs = list(event.frames)
                if event.audio is not None:
                    audio[i] = self._audio(event, problems[i])
            for ref in refs:
                image = self._image(ref, problems[i])
                if image is not None:
                    images.append(image)
                    owners.append(i)
        image_rows = self._encode(images)
        features = []
        for i in range(len(events)):
            rows = image_rows[[k for k, owner in enumerate(owners) if owner == i]] if images else None
            features.append((ModalityFeatures(
                tokens=tokens[i],
                image=rows if rows is not None and len(rows) else None,
                audio=audio[i],
            ), problems[i]))
        return features

    def _encode(self, images: list[np.ndarray]) -> np.ndarray:
        if not images or self.image_encoder is None:
            return np.zeros((0, 0), np.float32)
        parts = [self.image_encoder.encode(images[k:k + self.image_batch_size]).numpy()
                 for k in range(0, len(images), self.image_batch_size)]
        return np.concatenate(parts)

    def _image(self, ref: MediaRef, problems: list[Problem]) -> np.ndarray | None:
        if not ref.content_type.startswith("image/"):
            return None  # e.g. a video attached to a post: the video connector handles it
        try:
            data = self.media.read(ref)
            tensor = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
            return tensor.permute(1, 2, 0).numpy()  # HWC uint8
        except Exception as error:  # any decoder failure is bad input, not a crash
            problems.append(("undecodable_media", f"{ref.sha256[:12]}: {error}"))
            return None

    def _audio(self, clip: VideoClip, problems: list[Problem]) -> np.ndarray | None:
        try:
            samples = np.load(io.BytesIO(self.media.read(clip.audio)), allow_pickle=False)
            return audio_summary(np.asarray(samples, np.float32), clip.audio_sample_rate, self.audio_mels)
        except Exception as error:
            problems.append(("undecodable_media", f"audio {clip.audio.sha256[:12]}: {error}"))
            return None
