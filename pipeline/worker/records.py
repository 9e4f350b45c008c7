"""The byte format of a user's record in the worker's table.

A record is ``{"model": bytes | None, ...JSON-able rest}`` (see :mod:`pipeline.stream.processor`). The
model state (8 KiB of float32 for the default model) stays binary instead of going through base64
in JSON (a third larger):

    b"MSR1" | u32 length of the JSON part | JSON (everything but "model") | model state bytes

>>> record = {"model": b"\\x00\\x01", "last_step_ms": 5}
>>> decode_record(encode_record(record)) == record
True
>>> decode_record(encode_record({"model": None}))
{'model': None}

A record also says how far it got: ``applied``, per input partition, the highest offset it has
applied. Of two records of one user, the one that is behind is a stale write:

>>> older = encode_record({"model": None, "applied": {"posts/0": 4}})
>>> newer = encode_record({"model": None, "applied": {"posts/0": 9, "videos/0": 2}})
>>> is_behind(older, newer), is_behind(newer, older), is_behind(newer, newer)
(True, False, False)
"""

from __future__ import annotations

import json
import struct
from typing import Any

_MAGIC = b"MSR1"
_HEADER = struct.Struct("<4sI")


def encode_record(record: dict[str, Any]) -> bytes:
    rest = {k: v for k, v in record.items() if k != "model"}
    document = json.dumps(rest, separators=(",", ":")).encode()
    return _HEADER.pack(_MAGIC, len(document)) + document + (record.get("model") or b"")


def decode_record(data: bytes) -> dict[str, Any]:
    record, end = _document(data)
    record["model"] = data[end:] or None
    return record


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
