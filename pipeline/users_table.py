"""The worker's ``users`` table: a faust table whose recovery keeps each user's most advanced record.

faust does not fence table writes. A worker that loses a user's partition while a batch is in the
model (its session timed out under load, say) still stores that batch's record, and the write can
land in the changelog after records the new owner wrote since. Recovery applies the changelog in
order, so the next owner would start from that stale record, while the group's committed offsets
have moved past the events it lacks: their contribution would be lost from the user's state.

Every record carries the input offsets it has applied (:func:`pipeline.records.is_behind`), so the
stale one is known: recovery keeps a user's record unless the incoming one has applied at least as
much. Processing is deterministic for a given order of events, so whichever worker produced the
kept record, it is the state an uninterrupted run would have had at that point.
"""

from __future__ import annotations

import logging
from typing import Iterable

import faust
from faust.types import EventT

from pipeline import metrics
from pipeline.records import is_behind

log = logging.getLogger(__name__)


class UsersTable(faust.Table):
    """``app.Table`` for users' records (raw ``bytes`` keys and values, see :mod:`pipeline.records`)
    that never lets a changelog record replace one that has applied more.

    Built as ``app.Table`` builds one: ``app.tables.add(UsersTable(app, name="users",
    beacon=app.tables.beacon, key_type=bytes, value_type=bytes, use_partitioner=True))``.
    """

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        latest: dict[bytes, bytes | None] = {}  # this batch's newest value per key so far
        kept = []
        for event in batch:
            key, value = event.message.key, event.message.value
            current = latest[key] if key in latest else self.data.get(key)
            if value is not None and current is not None and is_behind(value, current):
                metrics.STALE_RECORDS_IGNORED.inc()
                log.warning("ignored a stale record of user %r from the changelog (offset %d): it has "
                            "applied less than the one held", key, event.message.offset)
                continue
            latest[key] = value
            kept.append(event)
        super().apply_changelog_batch(kept)
