"""Per-user recurrent state: what the streaming pipeline keeps between a user's steps.

Both LSTM units' ``h`` and ``c`` for every layer, the previous emotion vector (stage 2 compares the
current one with it) and the number of steps taken. One user's state serialises to compact bytes:

    header  : magic b"MSUS", format version (u8), dtype code (u8: 0 float32, 1 float16),
              layers (u16), hidden (u16), labels (u16), steps (u64)       -- little-endian
    payload : feature h, feature c, context h, context c ([layers, hidden] each), previous
              emotion [labels], in that order, in the header's dtype

float32 round-trips exactly; float16 halves the size and round-trips its own bytes exactly.

>>> states = UserStates.zeros(3, num_layers=2, hidden_size=8, n_labels=3)
>>> one = states.select(1)
>>> len(one), len(UserStates.stack([one, one]))
(1, 2)
>>> blob = one.to_bytes()
>>> len(blob), UserStates.from_bytes(blob).equal(one)
(288, True)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch

FORMAT_VERSION = 1
_MAGIC = b"MSUS"
_HEADER = struct.Struct("<4sBBHHHQ")
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

    _RECURRENT = ("feature_h", "feature_c", "context_h", "context_c")

    @classmethod
    def zeros(cls, n: int, num_layers: int, hidden_size: int, n_labels: int,
              device: str | torch.device = "cpu") -> "UserStates":
        recurrent = {name: torch.zeros(num_layers, n, hidden_size, device=device) for name in cls._RECURRENT}
        return cls(**recurrent, prev_emotion=torch.zeros(n, n_labels, device=device),
                   steps=torch.zeros(n, dtype=torch.long, device=device))

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
        # [B, 4 * layers * hidden + labels]: each row one user's payload, in the layout's order
        payload = np.concatenate(
            [getattr(self, name).detach().cpu().numpy().transpose(1, 0, 2).reshape(users, -1)
             for name in self._RECURRENT] + [self.prev_emotion.detach().cpu().numpy()], axis=1,
        ).astype(np.dtype(kind).newbyteorder("<"))
        labels = self.prev_emotion.shape[1]
        return [_HEADER.pack(_MAGIC, FORMAT_VERSION, code, layers, hidden, labels, steps) + row.tobytes()
                for steps, row in zip(self.steps.tolist(), payload)]

    @classmethod
    def from_bytes(cls, data: bytes, device: str | torch.device = "cpu") -> "UserStates":
        return cls.from_bytes_each([data], device)

    @classmethod
    def from_bytes_each(cls, blobs: Sequence[bytes], device: str | torch.device = "cpu") -> "UserStates":
        """A batch of the users whose :meth:`to_bytes` are ``blobs``, in order; they must share one
        shape (layers, hidden, labels), whatever dtype each was stored in."""
        shapes, rows, steps = set(), [], []
        for data in blobs:
            shape, row, count = _parse(data)
            shapes.add(shape)
            rows.append(row)
            steps.append(count)
        if len(shapes) != 1:
            raise ValueError(f"user states: one shape (layers, hidden, labels) per batch, got {sorted(shapes)}")
        (layers, hidden, labels), = shapes
        values = torch.from_numpy(np.stack(rows).astype(np.float32, copy=False)).to(device)  # [B, payload]
        block = layers * hidden
        recurrent = {name: values[:, i * block:(i + 1) * block].reshape(-1, layers, hidden).transpose(0, 1).contiguous()
                     for i, name in enumerate(cls._RECURRENT)}
        return cls(**recurrent, prev_emotion=values[:, 4 * block:],
                   steps=torch.tensor(steps, dtype=torch.long, device=device))


def _parse(data: bytes) -> tuple[tuple[int, int, int], np.ndarray, int]:
    """One user's state bytes: its shape (layers, hidden, labels), payload and step count."""
    if len(data) < _HEADER.size:
        raise ValueError("user state: truncated header")
    magic, version, code, layers, hidden, labels, steps = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("user state: not a moodshift user state (bad magic)")
    if version != FORMAT_VERSION:
        raise ValueError(f"user state: format version {version}, this code reads {FORMAT_VERSION}")
    if code not in _DTYPE_BY_CODE:
        raise ValueError(f"user state: unknown dtype code {code}")
    kind = _DTYPE_BY_CODE[code].newbyteorder("<")
    count = 4 * layers * hidden + labels
    if len(data) != _HEADER.size + count * kind.itemsize:
        raise ValueError(f"user state: {len(data)} bytes, expected {_HEADER.size + count * kind.itemsize}")
    return (layers, hidden, labels), np.frombuffer(data, dtype=kind, offset=_HEADER.size), steps
