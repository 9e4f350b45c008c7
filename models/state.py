"""Per-user recurrent state: what the streaming pipeline keeps between a user's steps.

Both LSTM units' ``h`` and ``c`` for every layer, the previous emotion vector (stage 2 compares the
current one with it), the stage-1 probabilities reported for the last ``history`` steps (the fitted
change classifier reads them: models/change_classifier.py; none without it) and the number of steps
taken. One user's state serialises to compact bytes:

    header  : magic b"MSUS", format version (u8), dtype code (u8: 0 float32, 1 float16),
              layers (u16), hidden (u16), labels (u16), steps (u64), history (u16)  -- little-endian
    payload : feature h, feature c, context h, context c ([layers, hidden] each), previous
              emotion [labels], reported probabilities [history, labels] (the latest step first),
              in that order, in the header's dtype

Version 1 (no history field, no reported probabilities) reads as history 0. float32 round-trips
exactly; float16 halves the size and round-trips its own bytes exactly.

>>> states = UserStates.zeros(3, num_layers=2, hidden_size=8, n_labels=3)
>>> one = states.select(1)
>>> len(one), len(UserStates.stack([one, one]))
(1, 2)
>>> blob = one.to_bytes()
>>> len(blob), UserStates.from_bytes(blob).equal(one)
(290, True)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch

FORMAT_VERSION = 2
_MAGIC = b"MSUS"
_HEADER_V1 = struct.Struct("<4sBBHHHQ")
_HEADER = struct.Struct("<4sBBHHHQH")
_DTYPES = {"float32": (0, np.float32), "float16": (1, np.float16)}
_DTYPE_BY_CODE = {code: np.dtype(kind) for code, kind in _DTYPES.values()}


@dataclass
class UserStates:
    """Recurrent state of B users; index with :meth:`select`, join with :meth:`stack`."""

    feature_h: torch.Tensor  # [layers, B, hidden]
    feature_c: torch.Tensor  # [layers, B, hidden]
    context_h: torch.Tensor  # [layers, B, hidden]
    context_c: torch.Tensor  # [layers, B, hidden]
    prev_emotion: torch.Tensor  # [B, labels]
    steps: torch.Tensor  # [B] long
    prev_probs: torch.Tensor  # [B, history, labels]: reported stage-1 probabilities, the latest step first

    _RECURRENT = ("feature_h", "feature_c", "context_h", "context_c")

    @classmethod
    def zeros(cls, n: int, num_layers: int, hidden_size: int, n_labels: int, history: int = 0,
              device: str | torch.device = "cpu") -> "UserStates":
        recurrent = {name: torch.zeros(num_layers, n, hidden_size, device=device) for name in cls._RECURRENT}
        return cls(**recurrent, prev_emotion=torch.zeros(n, n_labels, device=device),
                   steps=torch.zeros(n, dtype=torch.long, device=device),
                   prev_probs=torch.zeros(n, history, n_labels, device=device))

    def __len__(self) -> int:
        return len(self.steps)

    def _map(self, recurrent_fn, per_user_fn) -> "UserStates":
        return UserStates(**{
            f.name: (recurrent_fn if f.name in self._RECURRENT else per_user_fn)(getattr(self, f.name))
            for f in fields(self)
        })

    def select(self, index: int | slice | Sequence[int] | torch.Tensor) -> "UserStates":
        """The users at ``index``, keeping the batch dimension (an int gives a batch of one)."""
        if isinstance(index, int):
            index = [index]
        return self._map(lambda t: t[:, index], lambda t: t[index])

    @staticmethod
    def stack(states: Sequence["UserStates"]) -> "UserStates":
        """Concatenate batches of users, in order."""
        return UserStates(**{
            f.name: torch.cat([getattr(s, f.name) for s in states], dim=1 if f.name in UserStates._RECURRENT else 0)
            for f in fields(UserStates)
        })

    def to(self, device: str | torch.device) -> "UserStates":
        return self._map(lambda t: t.to(device), lambda t: t.to(device))

    def detach(self) -> "UserStates":
        return self._map(torch.Tensor.detach, torch.Tensor.detach)

    def equal(self, other: "UserStates") -> bool:
        return all(torch.equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    def to_bytes(self, dtype: str = "float32") -> bytes:
        """One user's state as versioned bytes (see the module docstring for the layout)."""
        if len(self) != 1:
            raise ValueError(f"to_bytes serialises one user; this batch holds {len(self)}")
        return self.to_bytes_each(dtype)[0]

    def to_bytes_each(self, dtype: str = "float32") -> list[bytes]:
        """Every user's :meth:`to_bytes`, in order; one conversion for the whole batch (a worker
        stores each user of a batch, and converting them one at a time cost more than the LSTM)."""
        if dtype not in _DTYPES:
            raise ValueError(f"dtype: {dtype!r} is not one of {sorted(_DTYPES)}")
        code, kind = _DTYPES[dtype]
        layers, users, hidden = self.feature_h.shape
        # [B, 4 * layers * hidden + (1 + history) * labels]: each row one user's payload, in the layout's order
        payload = np.concatenate(
            [getattr(self, name).detach().cpu().numpy().transpose(1, 0, 2).reshape(users, -1)
             for name in self._RECURRENT] + [self.prev_emotion.detach().cpu().numpy(),
                                             self.prev_probs.detach().cpu().numpy().reshape(users, -1)], axis=1,
        ).astype(np.dtype(kind).newbyteorder("<"))
        history, labels = self.prev_probs.shape[1:]
        return [_HEADER.pack(_MAGIC, FORMAT_VERSION, code, layers, hidden, labels, steps, history) + row.tobytes()
                for steps, row in zip(self.steps.tolist(), payload)]

    @classmethod
    def from_bytes(cls, data: bytes, device: str | torch.device = "cpu") -> "UserStates":
        return cls.from_bytes_each([data], device)

    @classmethod
    def from_bytes_each(cls, blobs: Sequence[bytes], device: str | torch.device = "cpu",
                        history: int | None = None) -> "UserStates":
        """A batch of the users whose :meth:`to_bytes` are ``blobs``, in order; they must share one
        shape (layers, hidden, labels, history), whatever dtype each was stored in. With ``history``,
        each state's reported probabilities are cut or padded to that many steps first (padded with
        uniform probabilities: a state stored before its model kept them says nothing of them)."""
        shapes, rows, steps = set(), [], []
        for data in blobs:
            shape, row, count = _parse(data)
            if history is not None and shape[3] != history:
                shape, row = _with_history(shape, row, history)
            shapes.add(shape)
            rows.append(row)
            steps.append(count)
        if len(shapes) != 1:
            raise ValueError(f"user states: one shape (layers, hidden, labels, history) per batch, "
                             f"got {sorted(shapes)}")
        (layers, hidden, labels, history), = shapes
        values = torch.from_numpy(np.stack(rows).astype(np.float32, copy=False)).to(device)  # [B, payload]
        block = layers * hidden
        recurrent = {name: values[:, i * block:(i + 1) * block].reshape(-1, layers, hidden).transpose(0, 1).contiguous()
                     for i, name in enumerate(cls._RECURRENT)}
        emotion_end = 4 * block + labels
        return cls(**recurrent, prev_emotion=values[:, 4 * block:emotion_end],
                   steps=torch.tensor(steps, dtype=torch.long, device=device),
                   prev_probs=values[:, emotion_end:].reshape(len(blobs), history, labels))


def _with_history(shape: tuple[int, int, int, int], row: np.ndarray, history: int
                  ) -> tuple[tuple[int, int, int, int], np.ndarray]:
    layers, hidden, labels, stored = shape
    kept = 4 * layers * hidden + (1 + min(stored, history)) * labels
    padding = np.full((history - min(stored, history)) * labels, 1.0 / labels, dtype=row.dtype)
    return (layers, hidden, labels, history), np.concatenate([row[:kept], padding])


def _parse(data: bytes) -> tuple[tuple[int, int, int, int], np.ndarray, int]:
    """One user's state bytes: its shape (layers, hidden, labels, history), payload and step count."""
    if len(data) < _HEADER_V1.size:
        raise ValueError("user state: truncated header")
    magic, version, code, layers, hidden, labels, steps = _HEADER_V1.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("user state: not a moodshift user state (bad magic)")
    if version not in (1, FORMAT_VERSION):
        raise ValueError(f"user state: format version {version}, this code reads 1 and {FORMAT_VERSION}")
    header, history = _HEADER_V1.size, 0
    if version == FORMAT_VERSION:
        if len(data) < _HEADER.size:
            raise ValueError("user state: truncated header")
        header, history = _HEADER.size, _HEADER.unpack_from(data)[-1]
    if code not in _DTYPE_BY_CODE:
        raise ValueError(f"user state: unknown dtype code {code}")
    kind = _DTYPE_BY_CODE[code].newbyteorder("<")
    count = 4 * layers * hidden + (1 + history) * labels
    if len(data) != header + count * kind.itemsize:
        raise ValueError(f"user state: {len(data)} bytes, expected {header + count * kind.itemsize}")
    return (layers, hidden, labels, history), np.frombuffer(data, dtype=kind, offset=header), steps
