"""Per-user event-time sliding windows built from panes, closed by a per-user watermark.

faust has tumbling and hopping windows only, and no "emit once when closed"; this module is that
missing piece, in plain Python. The faust glue feeds it events and forwards what it returns.

**Time unit.** Every time here is an ``int`` of milliseconds since the Unix epoch (Kafka's record
timestamp unit). Integers keep pane arithmetic exact, so replays cut the same panes.

**Panes.** Time is cut into panes of ``slide_ms``: pane ``i`` covers ``[i*slide_ms, (i+1)*slide_ms)``.
A window is ``size_ms`` long and ends on a multiple of ``slide_ms``; the window ending at ``e`` covers
``[e - size_ms, e)``, i.e. the ``size_ms // slide_ms`` panes before ``e``. Each pane keeps *one*
partial aggregate (a :class:`PaneAggregate`), never the events themselves, and a window is the merge
of its panes when it closes. Memory per user is bounded by the open panes:
``size/slide + allowed_lateness/slide + 1`` at most.

**Watermark: per user.** ``watermark = max event time seen for this user - allowed_lateness_ms``. The
window ending at ``e`` closes when ``watermark >= e``; it is emitted then, exactly once, in window-end
order, and only if it holds at least one event (a user with a gap has no steps there). An event whose
pane has already closed its *first* window is **late**: :meth:`UserWindows.add` returns a
:class:`LateEvent` instead of adding it (the glue dead-letters it with reason ``"late"``); nothing
is dropped silently. Events out of order within the lateness land in their own panes.

Why per user rather than per partition: the windows of a user then depend only on that user's own
events, not on how users interleave in a partition, how many partitions or workers there are, or
how a replay was produced. So replaying the same per-user input gives the same windows. The price:
a user's last windows close only when that user posts again, when the glue calls
:meth:`UserWindows.advance_watermark` (e.g. from an idle timer; that trades determinism for
latency), or at :meth:`UserWindows.flush`.

**State.** :meth:`UserWindows.to_dict` gives a JSON-able dict (for a faust table) and
:meth:`UserWindows.from_dict` restores it. A pane's aggregate must serialise itself the same way.

>>> from moodshift.pipeline.stream.aggregate import ModalityAggregate, ModalityFeatures
>>> spec = WindowSpec(size_ms=3_000, slide_ms=1_000, allowed_lateness_ms=1_000)
>>> user = UserWindows("u1", spec, ModalityAggregate)
>>> user.add(500, "a", ModalityFeatures(tokens=[1, 2]))
[]
>>> user.add(2_500, "b", ModalityFeatures(tokens=[3]))  # watermark 1500: closes the window ending 1000
[ClosedWindow(user_id='u1', start_ms=-2000, end_ms=1000, events=1)]
>>> user.add(200, "c", ModalityFeatures())  # pane [0, 1000) already closed its first window
LateEvent(user_id='u1', event_id='c', event_time_ms=200, watermark_ms=1500, reason='late')
>>> [(w.start_ms, w.end_ms, w.aggregate.tokens) for w in user.flush()]
[(-1000, 2000, [1, 2]), (0, 3000, [1, 2, 3]), (1000, 4000, [3]), (2000, 5000, [3])]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, Self, TypeVar


LATE_REASON = "late"


# -- the aggregate protocol ------------------------------------------------------------------------


class PaneAggregate(Protocol):
    """What a pane keeps: a mergeable partial aggregate (a monoid) that serialises to a dict.

    The empty aggregate is ``aggregate_type()``; ``merge`` folds ``other`` into ``self`` and must
    leave ``other`` unchanged (a pane is merged into every window that covers it).
    """

    def add(self, event_time_ms: int, event_id: str, payload: Any) -> None: ...

    def merge(self, other: Self) -> None: ...

    def to_dict(self) -> dict[str, Any]: ...


A = TypeVar("A", bound=PaneAggregate)


class AggregateType(Protocol[A]):
    """A zero-argument factory of empty aggregates that can also restore one from its dict.

    An aggregate class with a no-argument constructor and a ``from_dict`` classmethod is one.
    """

    def __call__(self) -> A: ...

    def from_dict(self, data: dict[str, Any]) -> A: ...


# -- values handed to the glue ---------------------------------------------------------------------


@dataclass(frozen=True)
class WindowSpec:
    """Window size, slide and allowed lateness, in milliseconds; size must be a multiple of slide.

    >>> WindowSpec(size_ms=600_000, slide_ms=60_000, allowed_lateness_ms=30_000).panes_per_window
    10
    """

    size_ms: int
    slide_ms: int
    allowed_lateness_ms: int = 0

    def __post_init__(self) -> None:
        if self.slide_ms <= 0 or self.size_ms <= 0:
            raise ValueError(f"size_ms and slide_ms must be positive, got {self}")
        if self.size_ms % self.slide_ms:
            raise ValueError(f"size_ms must be a multiple of slide_ms, got {self}")
        if self.allowed_lateness_ms < 0:
            raise ValueError(f"allowed_lateness_ms must be >= 0, got {self}")

    @property
    def panes_per_window(self) -> int:
        return self.size_ms // self.slide_ms

    def pane_of(self, event_time_ms: int) -> int:
        return event_time_ms // self.slide_ms


@dataclass(frozen=True)
class ClosedWindow(Generic[A]):
    """A closed window of one user: ``[start_ms, end_ms)`` and the merge of its panes' aggregates."""

    user_id: str
    start_ms: int
    end_ms: int
    aggregate: A = field(compare=False)

    def __repr__(self) -> str:
        events = getattr(self.aggregate, "event_count", "?")
        return (
            f"ClosedWindow(user_id={self.user_id!r}, start_ms={self.start_ms}, "
            f"end_ms={self.end_ms}, events={events})"
        )


@dataclass(frozen=True)
class LateEvent:
    """An event refused because its first window had already closed; dead-letter it, don't drop it."""

    user_id: str
    event_id: str
    event_time_ms: int
    watermark_ms: int
    reason: str = LATE_REASON


# -- one user's windows ----------------------------------------------------------------------------


class UserWindows(Generic[A]):
    """The sliding-window state of one user: open panes, max event time, and what has closed.

    ``add`` returns the windows the event closed (possibly none) or a :class:`LateEvent`.

    >>> from moodshift.pipeline.stream.aggregate import ModalityAggregate, ModalityFeatures
    >>> spec = WindowSpec(size_ms=2_000, slide_ms=1_000)
    >>> user = UserWindows("u1", spec, ModalityAggregate)
    >>> user.add(100, "a", ModalityFeatures(tokens=[7]))
    []
    >>> [(w.start_ms, w.end_ms) for w in user.add(1_500, "b", ModalityFeatures())]
    [(-1000, 1000)]
    >>> again = UserWindows.from_dict(user.to_dict(), spec, ModalityAggregate)
    >>> [(w.start_ms, w.end_ms, w.aggregate.event_count) for w in again.flush()]
    [(0, 2000, 2), (1000, 3000, 1)]
    """

    def __init__(self, user_id: str, spec: WindowSpec, aggregate_type: AggregateType[A]) -> None:
        self.user_id = user_id
        self.spec = spec
        self._aggregate_type = aggregate_type
        self._panes: dict[int, A] = {}
        self._max_event_time_ms: int | None = None
        self._watermark_ms: int | None = None

    @property
    def watermark_ms(self) -> int | None:
        """Windows ending at or before this have closed (None before the first event)."""
        return self._watermark_ms

    @property
    def pane_count(self) -> int:
        return len(self._panes)

    def add(self, event_time_ms: int, event_id: str, payload: Any) -> list[ClosedWindow[A]] | LateEvent:
        """Put an event in its pane, then close the windows the raised watermark passes."""
        pane = self.spec.pane_of(event_time_ms)
        first_window_end = (pane + 1) * self.spec.slide_ms
        if self._watermark_ms is not None and first_window_end <= self._watermark_ms:
            return LateEvent(self.user_id, event_id, event_time_ms, self._watermark_ms)
        if pane not in self._panes:
            self._panes[pane] = self._aggregate_type()
        self._panes[pane].add(event_time_ms, event_id, payload)
        if self._max_event_time_ms is None or event_time_ms > self._max_event_time_ms:
            self._max_event_time_ms = event_time_ms
        return self.advance_watermark(self._max_event_time_ms - self.spec.allowed_lateness_ms)

    def advance_watermark(self, watermark_ms: int) -> list[ClosedWindow[A]]:
        """Close (and return, in end order) every non-empty window ending at or before ``watermark_ms``.

        A watermark never moves back: a value at or below the current one closes nothing.
        """
        previous = self._watermark_ms
        if previous is not None and watermark_ms <= previous:
            return []
        self._watermark_ms = watermark_ms
        slide, k = self.spec.slide_ms, self.spec.panes_per_window
        ends = sorted(
            {
                (pane + j) * slide
                for pane in self._panes
                for j in range(1, k + 1)
                if (previous is None or (pane + j) * slide > previous)
                and (pane + j) * slide <= watermark_ms
            }
        )
        windows = [self._window_ending(end) for end in ends]
        # A pane is needed until its last window, ending at (pane + k) * slide, has closed.
        for pane in [p for p in self._panes if (p + k) * slide <= watermark_ms]:
            del self._panes[pane]
        return windows

    def flush(self) -> list[ClosedWindow[A]]:
        """Close every window that still has events (end of a replay, tests).

        Afterwards the watermark sits at the last window's end, so older events count as late.
        """
        if not self._panes:
            return []
        last_pane = max(self._panes)
        return self.advance_watermark((last_pane + self.spec.panes_per_window) * self.spec.slide_ms)

    def _window_ending(self, end_ms: int) -> ClosedWindow[A]:
        last_pane = end_ms // self.spec.slide_ms - 1
        merged = self._aggregate_type()
        for pane in range(last_pane - self.spec.panes_per_window + 1, last_pane + 1):
            if pane in self._panes:
                merged.merge(self._panes[pane])
        return ClosedWindow(self.user_id, end_ms - self.spec.size_ms, end_ms, merged)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state; panes as ``[index, aggregate dict]`` pairs in pane order."""
        return {
            "user_id": self.user_id,
            "slide_ms": self.spec.slide_ms,
            "max_event_time_ms": self._max_event_time_ms,
            "watermark_ms": self._watermark_ms,
            "panes": [[pane, self._panes[pane].to_dict()] for pane in sorted(self._panes)],
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], spec: WindowSpec, aggregate_type: AggregateType[A], user_id: str | None = None
    ) -> UserWindows[A]:
        """Restore state from :meth:`to_dict`; the slide must not have changed (panes depend on it).
        ``user_id``: whose state this is (the table key); the id stored in ``data`` when None."""
        if data["slide_ms"] != spec.slide_ms:
            raise ValueError(
                f"stored panes are {data['slide_ms']} ms wide but the spec slides {spec.slide_ms} ms"
            )
        user = cls(data["user_id"] if user_id is None else user_id, spec, aggregate_type)
        user._max_event_time_ms = data["max_event_time_ms"]
        user._watermark_ms = data["watermark_ms"]
        user._panes = {int(pane): aggregate_type.from_dict(agg) for pane, agg in data["panes"]}
        return user
