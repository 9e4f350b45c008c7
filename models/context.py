"""External context: daily weather and market values as normalised series for the model.

Channels (``ModelConfig.context_channels``, in this order by default): daily maximum and minimum
temperature (°C), the market index's daily log return, and the log of its daily volume. The model
sees, at each step, the last ``context_length`` days before the step's event time, each channel
standardised with statistics fitted on the training series and stored in the checkpoint.

>>> values = np.array([[20.0, 10.0, 0.01, 21.0], [24.0, 12.0, -0.01, 21.5]])
>>> normaliser = ContextNormaliser.fit(values)
>>> normaliser.apply(values).mean(axis=0).round(6).tolist()
[0.0, 0.0, 0.0, 0.0]
>>> ContextNormaliser.from_dict(normaliser.to_dict()) == normaliser
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ContextNormaliser:
    """Per-channel standardisation: (x - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, values: np.ndarray) -> "ContextNormaliser":
        """From raw daily values [days, channels]; NaNs are ignored, constant channels get std 1."""
        values = np.asarray(values, dtype=np.float64)
        std = np.nanstd(values, axis=0)
        return cls(tuple(np.nanmean(values, axis=0).tolist()), tuple(np.where(std > 0, std, 1.0).tolist()))

    @classmethod
    def identity(cls, n_channels: int) -> "ContextNormaliser":
        return cls((0.0,) * n_channels, (1.0,) * n_channels)

    def apply(self, series: np.ndarray) -> np.ndarray:
        """Raw values [..., channels] → float32 standardised values; NaN (a gap) becomes the mean."""
        scaled = (np.asarray(series, dtype=np.float64) - self.mean) / self.std
        return np.nan_to_num(scaled, nan=0.0).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: dict) -> "ContextNormaliser":
        return cls(tuple(values["mean"]), tuple(values["std"]))
