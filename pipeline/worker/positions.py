"""Where each input partition's events have been applied up to, so that they apply in offset order.

A user's record skips the events at or below the highest offset it has applied from a partition
(a replay after a crash re-reads them). That rule is exact only if a worker applies each partition's
events in offset order, with none left out. faust does not promise that order across a rebalance:
its fetcher can hand the agent records fetched before a seek (a stale position) ahead of the records
the seek re-reads, so a later offset reached the model first and the earlier ones were then skipped
as replays (issue 12: six days of one user's posts, never applied, never reported).

:class:`InputPositions` is the gate in front of the model: per partition, the offset of the next
event to apply. An event below it is a duplicate (skipped), an event at it is applied, and an event
past it is out of order: it is not applied, and the caller seeks the partition back.

>>> positions = InputPositions()
>>> positions.start("posts/0", 10)
>>> [positions.admit("posts/0", offset) for offset in (10, 11, 9, 13)]
[<Admission.APPLY: 'apply'>, <Admission.APPLY: 'apply'>, <Admission.DUPLICATE: 'duplicate'>, <Admission.OUT_OF_ORDER: 'out_of_order'>]
>>> positions.next_offset("posts/0")
12

Offsets can be missing for real (a transactional producer's commit markers, compaction, retention);
the caller asks the broker where the next record after the position is, and moves on to it:

>>> positions.skip_to("posts/0", 13)
>>> positions.admit("posts/0", 13), positions.next_offset("posts/0")
(<Admission.APPLY: 'apply'>, 14)
"""

from __future__ import annotations

import enum
from typing import Hashable, Iterable


class Admission(enum.Enum):
    APPLY = "apply"  # the next event of its partition
    DUPLICATE = "duplicate"  # applied already by this worker
    OUT_OF_ORDER = "out_of_order"  # events before it have not come yet: do not apply it


class InputPositions:
    """Per input partition, the offset of the next event to apply (the committed offset to start)."""

    def __init__(self) -> None:
        self._next: dict[Hashable, int] = {}

    def known(self, partition: Hashable) -> bool:
        return partition in self._next

    def start(self, partition: Hashable, offset: int) -> None:
        """Begin a partition at ``offset``: the group's committed offset, or the log's start."""
        self._next[partition] = offset

    def forget(self, partitions: Iterable[Hashable] | None = None) -> None:
        """Drop positions (all when None): after a rebalance they start again from committed offsets."""
        if partitions is None:
            self._next.clear()
        else:
            for partition in partitions:
                self._next.pop(partition, None)

    def next_offset(self, partition: Hashable) -> int:
        return self._next[partition]

    def admit(self, partition: Hashable, offset: int) -> Admission:
        """Whether the event at ``offset`` is the next to apply; if so, the position moves past it."""
        expected = self._next[partition]
        if offset < expected:
            return Admission.DUPLICATE
        if offset > expected:
            return Admission.OUT_OF_ORDER
        self._next[partition] = offset + 1
        return Admission.APPLY

    def skip_to(self, partition: Hashable, offset: int) -> None:
        """The log has no record between the position and ``offset``: go on from there."""
        if offset > self._next[partition]:
            self._next[partition] = offset
