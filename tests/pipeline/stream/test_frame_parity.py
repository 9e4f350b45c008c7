"""Train/serve parity of video frames: a real clip sampled by the training path
(:func:`models.video.decode_video`) and by the video connector (:func:`connectors.video.extract_clip_media`,
read back by the worker's :class:`pipeline.stream.features.FeatureExtractor`) gives the same frames at
the same instants; the connector's JPEG (quality 90) is the one difference, and it stays small in
pixels and in the backbone's features."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image

from moodshift.connectors.media import MediaStore
from moodshift.connectors.schemas import VideoClip
from moodshift.connectors.settings import ConnectorSettings
from moodshift.connectors.video import extract_clip_media
from moodshift.models.config import ModelConfig
from moodshift.models.datasets.media import SAMPLE_VIDEOS, sample_video_dir
from moodshift.models.image import ImageEncoder
from moodshift.models.text import TextHasher
from moodshift.models.video import decode_video
from moodshift.pipeline.stream.features import FeatureExtractor


def test_real_clips_give_the_same_frames_in_training_and_serving(tmp_path: Path) -> None:
    config = ModelConfig()
    encoder = ImageEncoder(config.image_backbone, weights=None, allow_random=True)  # the default preset's
    store = MediaStore(tmp_path / "media")
    extractor = FeatureExtractor(TextHasher(config), store, encoder, config.audio_mels)
    settings = ConnectorSettings(video_frames_per_second=1.0, video_max_frames=6)
    for name in SAMPLE_VIDEOS:
        training = decode_video(sample_video_dir() / name, frame_rate=1.0, max_frames=6)
        media = extract_clip_media(store, sample_video_dir() / name, settings)
        assert len(media.frames) == len(training.frames) > 0, name
        served = np.stack([decode_image(torch.frombuffer(bytearray(store.read(ref)), dtype=torch.uint8),
                                        mode=ImageReadMode.RGB).permute(1, 2, 0).numpy() for ref in media.frames])
        assert served.shape == training.frames.shape, name
        pixel_error = np.abs(served.astype(np.int16) - training.frames.astype(np.int16)).mean()
        assert pixel_error < 3.0, f"{name}: JPEG moved pixels by {pixel_error:.2f} levels on average"

        clip = VideoClip(event_id=name, user_id="u", event_time=datetime(2016, 6, 1, tzinfo=timezone.utc),
                         clip=media.frames[0], duration_s=media.duration_s, frame_rate=media.frame_rate,
                         width=media.width, height=media.height, frames=media.frames,
                         frame_times_s=media.frame_times_s, frames_per_second=media.frames_per_second)
        [(features, problems)] = extractor.extract([clip])
        trained = encoder.encode(list(training.frames)).numpy()
        cosine = (features.image * trained).sum(1) / (np.linalg.norm(features.image, axis=1)
                                                      * np.linalg.norm(trained, axis=1))
        assert problems == [] and cosine.min() > 0.99, f"{name}: feature cosine {cosine.round(4)}"
