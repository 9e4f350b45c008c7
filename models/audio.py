"""Audio → log-mel features, in numpy (no extra audio library).

A 25 ms Hann window every 10 ms, a power spectrum, ``n_mels`` triangular mel filters (HTK mel
scale) up to 8 kHz, then ``log(1e-6 + energy)``. Window and hop are in seconds, so clips recorded at
different sample rates give comparable bands. :func:`audio_summary` pools a clip to one fixed-size
vector (mean and standard deviation of each band), the model's audio input.

>>> sr = 16_000
>>> tone = np.sin(2 * np.pi * 440 * np.arange(sr) / sr).astype(np.float32)
>>> log_mel(tone, sr, n_mels=40).shape
(98, 40)
>>> audio_summary(tone, sr, n_mels=40).shape
(80,)
"""

from __future__ import annotations

import functools

import numpy as np

WINDOW_S = 0.025
HOP_S = 0.010
MAX_HZ = 8_000.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular mel filters, shape [n_mels, n_fft // 2 + 1]."""
    top = min(MAX_HZ, sample_rate / 2)
    edges_hz = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array(top)), n_mels + 2))
    bins_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bins_hz) / np.maximum(upper - centre, 1e-9)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


def log_mel(audio: np.ndarray, sample_rate: int, n_mels: int = 64) -> np.ndarray:
    """Log-mel energies of a mono clip: [frames, n_mels] float32 (zero frames for an empty clip)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    win = int(round(WINDOW_S * sample_rate))
    hop = int(round(HOP_S * sample_rate))
    n_fft = 1 << (win - 1).bit_length()
    if audio.size < win:
        return np.zeros((0, n_mels), dtype=np.float32)
    n_frames = 1 + (audio.size - win) // hop
    # [frames, win] view of overlapping windows, no copy until the multiplication.
    frames = np.lib.stride_tricks.sliding_window_view(audio, win)[::hop][:n_frames]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(win).astype(np.float32), n=n_fft)) ** 2
    energies = spectrum.astype(np.float32) @ mel_filterbank(sample_rate, n_fft, n_mels).T
    return np.log(1e-6 + energies).astype(np.float32)


def audio_summary(audio: np.ndarray, sample_rate: int, n_mels: int = 64) -> np.ndarray:
    """Mean and standard deviation of each log-mel band: [2 * n_mels] float32.

    Raises ValueError for a clip shorter than one window: that is a missing modality, not silence.
    """
    bands = log_mel(audio, sample_rate, n_mels)
    if len(bands) == 0:
        raise ValueError("audio clip is shorter than one analysis window")
    return np.concatenate([bands.mean(axis=0), bands.std(axis=0)]).astype(np.float32)
