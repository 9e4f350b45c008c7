"""Users' records between checkpoints: they change in memory and reach the changelog once per checkpoint.

Writing every batch's records to the changelog made it the worker's biggest cost: a user's whole
record (about 9 KB) for every batch the user was in. Here a batch's records stay in memory, each
with the input events they include; a checkpoint (every ``checkpoint_interval_seconds``) writes each
changed record once and only then hands back those events to be acknowledged, so the offsets Kafka
commits never run ahead of the records in the changelog. A batch does not wait for its outputs'
acknowledgements; the checkpoint does, before it stores the records that include the batch, so no
record is stored or written for outputs Kafka may not have. A crash between two checkpoints loses
nothing: the events since the last checkpoint were not acknowledged, Kafka hands them out again, and
the records' ``applied`` offsets (:mod:`pipeline.stream.records`) skip those the changelog holds already.

>>> table = {}
>>> records = CheckpointedRecords(table)
>>> records.stage({"u1": UserRecord(applied={"posts/0": 3})}, events=["event 3"])
>>> records.get("u1").applied, table
({'posts/0': 3}, {})
>>> changes, events, outputs = records.take()
>>> list(changes), events, outputs
([b'u1'], ['event 3'], [])
>>> table.update(changes)
>>> records.get("u1").applied, records.take()
({'posts/0': 3}, ({}, [], []))
"""

from __future__ import annotations

from typing import Any, Awaitable, Generic, Iterable, Mapping, TypeVar

from moodshift.pipeline.stream.records import UserRecord

Event = TypeVar("Event")


class CheckpointedRecords(Generic[Event]):
    """A table of users' records (``bytes`` key → record bytes) plus what changed since the last
    checkpoint, the input events those changes include, and the acknowledgements of their outputs."""

    def __init__(self, table: Mapping[bytes, bytes]) -> None:
        self.table = table
        self._changed: dict[str, UserRecord] = {}
        self._events: list[Event] = []
        self._outputs: list[Awaitable[Any]] = []

    def get(self, user: str) -> UserRecord | None:
        """The user's newest record: changed since the last checkpoint, else the table's."""
        if user in self._changed:
            return self._changed[user]
        stored = self.table.get(user.encode())
        return None if stored is None else UserRecord.from_bytes(stored)

    def stage(self, records: Mapping[str, UserRecord], events: list[Event],
              outputs: Iterable[Awaitable[Any]] = ()) -> None:
        """Records a batch produced, the events it consumed, and the acknowledgements of the outputs it
        handed to the producer (they may still be on their way)."""
        self._changed.update(records)
        self._events.extend(events)
        self._outputs.extend(outputs)

    @property
    def pending_users(self) -> int:
        return len(self._changed)

    def take(self) -> tuple[dict[bytes, bytes], list[Event], list[Awaitable[Any]]]:
        """The changed records, encoded once each; the events to acknowledge once they are written; the
        outputs' acknowledgements to wait for before they are stored."""
        changes = {user.encode(): record.to_bytes() for user, record in self._changed.items()}
        events, self._events = self._events, []
        outputs, self._outputs = self._outputs, []
        self._changed = {}
        return changes, events, outputs
