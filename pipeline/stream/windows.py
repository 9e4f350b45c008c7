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

import bisect
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, Protocol, Self, Sequence, TypeVar

import numpy as np

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
        cls, data: dict[str, Any], spec: WindowSpec, aggregate_type: AggregateType[A]
    ) -> UserWindows[A]:
        """Restore state from :meth:`to_dict`; the slide must not have changed (panes depend on it)."""
        if data["slide_ms"] != spec.slide_ms:
            raise ValueError(
                f"stored panes are {data['slide_ms']} ms wide but the spec slides {spec.slide_ms} ms"
            )
        user = cls(data["user_id"], spec, aggregate_type)
        user._max_event_time_ms = data["max_event_time_ms"]
        user._watermark_ms = data["watermark_ms"]
        user._panes = {int(pane): aggregate_type.from_dict(agg) for pane, agg in data["panes"]}
        return user


# -- the aggregate the pipeline uses ---------------------------------------------------------------


@dataclass(frozen=True)
class ModalityFeatures:
    """One event's features: text token ids, image/frame vectors, audio summary vectors.

    ``image`` and ``audio`` are ``[dim]`` or ``[n, dim]`` (e.g. several video frames); absent is None.
    """

    tokens: Sequence[int] = ()
    image: np.ndarray | None = None
    audio: np.ndarray | None = None


class _NewestWithin:
    """The newest entries (in sort order) whose total weight is at most ``cap``, whatever the arrival order.

    It remembers ``cutoff``, the newest entry it ever dropped: an entry at or before it is dropped on
    arrival (it cannot be in the answer, since the cutoff and everything newer already overflowed).
    So the kept entries are always the longest suffix, over everything seen, that fits.
    """

    def __init__(self, cap: int, weight: Callable[[tuple], int]) -> None:
        self.cap = cap
        self.weight = weight
        self.entries: list[tuple] = []
        self.cutoff: tuple | None = None

    def add(self, entry: tuple) -> None:
        if self.cutoff is None or entry > self.cutoff:
            bisect.insort(self.entries, entry)
            self._shrink()

    def merge(self, other: _NewestWithin) -> None:
        self.cutoff = max((c for c in (self.cutoff, other.cutoff) if c is not None), default=None)
        self.entries = sorted(
            e for e in self.entries + other.entries if self.cutoff is None or e > self.cutoff
        )
        self._shrink()

    def _shrink(self) -> None:
        total = 0
        for i in range(len(self.entries) - 1, -1, -1):
            total += self.weight(self.entries[i])
            if total > self.cap:
                self.cutoff = self.entries[i]
                del self.entries[: i + 1]
                return

    def to_dict(self) -> dict[str, Any]:
        return {
            "entries": [_entry_to_json(e) for e in self.entries],
            "cutoff": None if self.cutoff is None else _entry_to_json(self.cutoff),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.entries = [_entry_from_json(e) for e in data["entries"]]
        self.cutoff = None if data["cutoff"] is None else _entry_from_json(data["cutoff"])


def _entry_to_json(entry: tuple) -> list:
    return [list(part) if isinstance(part, tuple) else part for part in entry]


def _entry_from_json(entry: list) -> tuple:
    return tuple(tuple(part) if isinstance(part, list) else part for part in entry)


class _VectorSum:
    """Sum and count of same-sized vectors (float64 sum, so arrival order barely matters)."""

    def __init__(self, total: np.ndarray | None = None, count: int = 0) -> None:
        self.total = total
        self.count = count

    def add(self, vectors: np.ndarray, count: int) -> None:
        if self.total is not None and vectors.shape != self.total.shape:
            raise ValueError(f"vector of shape {vectors.shape}, expected {self.total.shape}")
        self.total = vectors.astype(np.float64) if self.total is None else self.total + vectors
        self.count += count

    def add_rows(self, rows: np.ndarray) -> None:
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        self.add(rows.sum(axis=0), len(rows))

    def merge(self, other: _VectorSum) -> None:
        if other.total is not None:
            self.add(other.total, other.count)

    def mean(self) -> np.ndarray | None:
        return None if self.total is None else (self.total / self.count).astype(np.float32)

    def to_list(self) -> list[float] | None:
        return None if self.total is None else self.total.tolist()

    @classmethod
    def from_parts(cls, total: Iterable[float] | None, count: int) -> _VectorSum:
        return cls(None if total is None else np.asarray(total, dtype=np.float64), count)


class ModalityAggregate:
    """Partial aggregate of :class:`ModalityFeatures`: the pane/window content the model steps on.

    - text: token ids of the events in event-time order (ties by event id). Each event keeps at most
      its first ``max_tokens`` tokens; the window keeps the **most recent** events' tokens that fit
      in ``max_tokens`` (512) in total, dropping whole older events; ``tokens_dropped`` counts the rest;
    - image and audio: sum and count of vectors, read as a float32 mean;
    - ``event_count``, ``min/max_event_time_ms``, and the ids of the most recent ``max_event_ids`` (64)
      events (``event_ids``, time order);
    - ``modalities``: which of ``text``, ``image``, ``audio`` occurred.

    What is kept does not depend on arrival order; the vector means may differ in the last float bits.

    >>> agg = ModalityAggregate()
    >>> agg.add(2_000, "b", ModalityFeatures(tokens=[5, 6], image=np.array([1.0, 3.0])))
    >>> agg.add(1_000, "a", ModalityFeatures(tokens=[4], image=np.array([3.0, 5.0])))
    >>> agg.tokens, agg.image_mean.tolist(), agg.audio_mean, agg.modalities, agg.event_ids
    ([4, 5, 6], [2.0, 4.0], None, ('image', 'text'), ['a', 'b'])
    """

    max_tokens = 512
    max_event_ids = 64

    def __init__(self) -> None:
        self._text = _NewestWithin(self.max_tokens, lambda entry: len(entry[2]))  # (time, id, tokens)
        self._text_tokens_seen = 0
        self._text_events = 0
        self._image = _VectorSum()
        self._audio = _VectorSum()
        self._event_ids = _NewestWithin(self.max_event_ids, lambda entry: 1)  # (time, id)
        self.event_count = 0
        self.min_event_time_ms: int | None = None
        self.max_event_time_ms: int | None = None

    # reading

    @property
    def tokens(self) -> list[int]:
        return [token for _, _, tokens in self._text.entries for token in tokens]

    @property
    def tokens_dropped(self) -> int:
        return self._text_tokens_seen - len(self.tokens)

    @property
    def image_mean(self) -> np.ndarray | None:
        return self._image.mean()

    @property
    def audio_mean(self) -> np.ndarray | None:
        return self._audio.mean()

    @property
    def event_ids(self) -> list[str]:
        return [event_id for _, event_id in self._event_ids.entries]

    @property
    def modalities(self) -> tuple[str, ...]:
        present = {"text": self._text_events, "image": self._image.count, "audio": self._audio.count}
        return tuple(sorted(name for name, count in present.items() if count))

    # the PaneAggregate protocol

    def add(self, event_time_ms: int, event_id: str, payload: ModalityFeatures) -> None:
        if payload.tokens:
            tokens = tuple(int(t) for t in payload.tokens)
            self._text_tokens_seen += len(tokens)
            self._text_events += 1
            self._text.add((event_time_ms, event_id, tokens[: self.max_tokens]))
        if payload.image is not None:
            self._image.add_rows(payload.image)
        if payload.audio is not None:
            self._audio.add_rows(payload.audio)
        self._event_ids.add((event_time_ms, event_id))
        self.event_count += 1
        self._widen_times(event_time_ms, event_time_ms)

    def merge(self, other: ModalityAggregate) -> None:
        self._text.merge(other._text)
        self._text_tokens_seen += other._text_tokens_seen
        self._text_events += other._text_events
        self._image.merge(other._image)
        self._audio.merge(other._audio)
        self._event_ids.merge(other._event_ids)
        self.event_count += other.event_count
        if other.min_event_time_ms is not None and other.max_event_time_ms is not None:
            self._widen_times(other.min_event_time_ms, other.max_event_time_ms)

    def _widen_times(self, low: int, high: int) -> None:
        self.min_event_time_ms = low if self.min_event_time_ms is None else min(self.min_event_time_ms, low)
        self.max_event_time_ms = high if self.max_event_time_ms is None else max(self.max_event_time_ms, high)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self._text.to_dict(),
            "text_tokens_seen": self._text_tokens_seen,
            "text_events": self._text_events,
            "image": [self._image.to_list(), self._image.count],
            "audio": [self._audio.to_list(), self._audio.count],
            "event_ids": self._event_ids.to_dict(),
            "event_count": self.event_count,
            "min_event_time_ms": self.min_event_time_ms,
            "max_event_time_ms": self.max_event_time_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModalityAggregate:
        agg = cls()
        agg._text.load(data["text"])
        agg._text_tokens_seen = data["text_tokens_seen"]
        agg._text_events = data["text_events"]
        agg._image = _VectorSum.from_parts(*data["image"])
        agg._audio = _VectorSum.from_parts(*data["audio"])
        agg._event_ids.load(data["event_ids"])
        agg.event_count = data["event_count"]
        agg.min_event_time_ms = data["min_event_time_ms"]
        agg.max_event_time_ms = data["max_event_time_ms"]
        return agg

