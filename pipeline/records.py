"""The byte format of a user's record in the worker's table.

A record is ``{"model": bytes | None, ...JSON-able rest}`` (see :mod:`pipeline.processor`). The
model state (8 KiB of float32 for the default model) stays binary instead of going through base64
in JSON (a third larger):

    b"MSR1" | u32 length of the JSON part | JSON (everything but "model") | model state bytes

>>> record = {"model": b"\\x00\\x01", "last_step_ms": 5}
>>> decode_record(encode_record(record)) == record
True
>>> decode_record(encode_record({"model": None}))
{'model': None}
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
    magic, length = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("not a moodshift user record (bad magic)")
    start = _HEADER.size
    record = json.loads(data[start:start + length])
    record["model"] = data[start + length:] or None
    return record
