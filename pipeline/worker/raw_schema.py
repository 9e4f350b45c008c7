"""The worker's topics hold bytes, and its events carry them as Kafka delivered them.

faust decodes every consumed record through its schema: the key and the value each go through the
serializer registry (the codec looked up by name, the payload prepared for the declared type), which
for the ``raw`` codec and ``bytes`` hands back the bytes it was given. That round took about 6% of a
busy worker's event loop (a py-spy profile, docs/benchmarks.md). :class:`RawSchema` gives the same
events without it. Validation is the worker's own (``connectors.schemas``), so that a record that is
not a valid post becomes a dead letter with a reason instead of faust's decode error.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import AppT, EventT, Message


class RawSchema(faust.Schema):
    """Keys and values as bytes, exactly as Kafka holds them (``None`` stays ``None``), read and
    written by faust's ``raw`` codec; decoding hands the message's own key and value to the event.

    >>> import asyncio
    >>> app = faust.App("raw-schema-doc")
    >>> decode = RawSchema().compile(app)
    >>> message = Message("posts", 0, 7, 0.0, 0, {}, b"user-1", b'{"text": "hi"}', None)
    >>> event = asyncio.run(decode(message))
    >>> event.key, event.value, event.message.offset
    (b'user-1', b'{"text": "hi"}', 7)
    """

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def compile(self, app: AppT, *, default_propagate: bool = False, **decode_error_callbacks: Any) -> Any:
        # No decode errors to report: bytes are taken as they are.
        create_event = app.create_event

        async def decode(message: Message, *, propagate: bool = default_propagate) -> EventT:
            return create_event(message.key, message.value, message.headers, message)

        return decode
