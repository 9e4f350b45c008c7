"""Where the model runs: ``auto`` picks CUDA when a GPU is present, else the CPU.

>>> resolve_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

import torch


def resolve_device(device: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:1``, ... → a :class:`torch.device`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
