"""A user's record in the worker's table: :class:`UserRecord` and its byte format.

The model state (8 KiB of float32 for the default model) stays binary instead of going through
base64 in JSON (a third larger):

    b"MSR1" | u32 length of the JSON part | JSON (every field but ``model``) | model state bytes

>>> record = UserRecord(model=b"\\x00\\x01", last_step_ms=5)
>>> UserRecord.from_bytes(record.to_bytes()) == record
True

A record also says how far it got: ``applied``, per input partition, the highest offset it has
applied. Of two records of one user, the one that is behind is a stale write:

>>> older = UserRecord(applied={"posts/0": 4}).to_bytes()
>>> newer = UserRecord(applied={"posts/0": 9, "videos/0": 2}).to_bytes()
>>> is_behind(older, newer), is_behind(newer, older), is_behind(newer, newer)
(True, False, False)
"""

from __future__ import annotations

import dataclasses
import json
import struct
from dataclasses import dataclass, field
from typing import Any

_MAGIC = b"MSR1"
_HEADER = struct.Struct("<4sI")


@dataclass
class UserRecord:
    """What a worker keeps per user between steps: O(1) in the user's history.

    ``windows``: the open panes (:meth:`pipeline.stream.windows.UserWindows.to_dict`); ``model``: the
    LSTM state bytes (:mod:`models.state`); ``detector``: the change detector's state
    (:meth:`models.detector.ChangeDetector.to_dict`); ``last_step_ms``: the end of the
    user's last window step; ``applied``: per input partition ("posts/3"), the highest offset applied.
    """

    windows: dict[str, Any] | None = None
    model: bytes | None = None
    detector: dict[str, Any] | None = None
    last_step_ms: int | None = None
    applied: dict[str, int] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        document = json.dumps({f.name: getattr(self, f.name) for f in _JSON_FIELDS}, separators=(",", ":")).encode()
        return _HEADER.pack(_MAGIC, len(document)) + document + (self.model or b"")

    @classmethod
    def from_bytes(cls, data: bytes) -> "UserRecord":
        """A record from its bytes; fields a record of an older version lacks take their defaults."""
        document, end = _document(data)
        return cls(model=data[end:] or None, **{f.name: document[f.name] for f in _JSON_FIELDS if f.name in document})


_JSON_FIELDS = tuple(f for f in dataclasses.fields(UserRecord) if f.name != "model")


def is_behind(candidate: bytes, current: bytes) -> bool:
    """Whether ``candidate`` has applied less than ``current``: no offset past current's and some
    offset short of it. Such a record comes from a worker that stored a batch after it had lost the
    user's partition (faust does not fence table writes); it must not replace ``current``. Records
    that cannot be read are never called behind: the caller keeps its last-writer-wins order."""
    try:
        behind, ahead = _document(candidate)[0].get("applied", {}), _document(current)[0].get("applied", {})
    except (ValueError, struct.error):
        return False
    return (all(offset <= ahead.get(source, -1) for source, offset in behind.items())
            and any(offset > behind.get(source, -1) for source, offset in ahead.items()))


def _document(data: bytes) -> tuple[dict[str, Any], int]:
    """The record's JSON part, decoded, and where the model state bytes start."""
    magic, length = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("not a moodshift user record (bad magic)")
    end = _HEADER.size + length
    return json.loads(data[_HEADER.size:end]), end
