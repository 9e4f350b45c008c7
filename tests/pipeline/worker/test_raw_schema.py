"""RawSchema hands the agent the same events faust's raw codec would, without the codec registry."""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types import Message

from moodshift.pipeline.worker.raw_schema import RawSchema


@pytest.mark.parametrize("key, value", [(b"user-1", b'{"text": "hi"}'), (None, b"\xff\x00 not utf-8"),
                                        (b"user-2", None), (b"", b"")])
def test_events_equal_those_of_fausts_raw_codec(key: bytes | None, value: bytes | None) -> None:
    app = faust.App("raw-schema-test")
    fausts = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    message = Message("moodshift.posts", 3, 41, 1.5, 0, [("h", b"v")], key, value, None)

    async def both() -> tuple[faust.EventT, faust.EventT]:
        return await RawSchema().compile(app)(message), await fausts.compile(app)(message)

    ours, theirs = asyncio.run(both())
    assert (ours.key, ours.value, ours.headers, ours.message) == (theirs.key, theirs.value, theirs.headers, message)
    assert ours.key is key and ours.value is value  # the bytes Kafka delivered, not copies


def test_a_topic_with_it_sends_raw_bytes() -> None:
    app = faust.App("raw-schema-test")
    topic = app.topic("moodshift.emotion-changes", schema=RawSchema())
    assert (topic.key_type, topic.value_type) == (bytes, bytes)
    assert topic.prepare_key(b"k", None)[0] == b"k" and topic.prepare_value(b"\x00v", None)[0] == b"\x00v"
