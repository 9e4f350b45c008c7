"""What a pane and a window hold for the model: :class:`ModalityAggregate` over each event's
:class:`ModalityFeatures` (text tokens, image/frame and audio vectors), the
:class:`pipeline.stream.windows.PaneAggregate` that the pipeline's windows use.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from moodshift.models.text import MAX_TOKENS


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
        # The entries themselves, not copies: they are tuples, never changed in place, and JSON
        # writes them as arrays. Every batch turns its users' windows to dicts and back, and copying
        # each entry's token ids took a third of a busy worker's model thread when windows held
        # many posts (docs/benchmarks.md, "Windows without copies").
        return {"entries": list(self.entries), "cutoff": self.cutoff}

    def load(self, data: dict[str, Any]) -> None:
        # Entries decoded from JSON are lists; those of a dict that never left memory are tuples already.
        self.entries = [entry if type(entry) is tuple else _entry_from_json(entry) for entry in data["entries"]]
        cutoff = data["cutoff"]
        self.cutoff = cutoff if cutoff is None or type(cutoff) is tuple else _entry_from_json(cutoff)


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
    >>> agg.text_events
    [('a', (4,)), ('b', (5, 6))]
    """

    max_tokens = MAX_TOKENS
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
    def text_events(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(event id, token ids)`` of the events whose text is in :attr:`tokens`, in that order."""
        return [(event_id, tokens) for _, event_id, tokens in self._text.entries]

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

