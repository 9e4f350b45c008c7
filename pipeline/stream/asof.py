"""As-of joins against recent context: weather per location, market data per symbol.

Times are ``int`` milliseconds since the Unix epoch, as in :mod:`pipeline.stream.windows`.

:class:`ContextHistory` keeps, per key, a bounded history of observations (time, float vector),
sorted by event time whatever the arrival order; an observation at an already-known time replaces
the old one, so redelivered records change nothing. It is bounded by count (the newest
``max_observations``) and optionally by age (older than ``max_age_ms`` before the newest one), both
measured in event time, so what is kept does not depend on arrival order either.

:class:`ContextCombiner` turns several histories into the per-step context of one user step: a
``[length, channels]`` float32 array sampled on a regular grid ending at the step's event time (row
``i`` is the as-of value at ``time - (length - 1 - i) * step_ms``; the last row is the as-of context
itself) and a same-shaped boolean mask. Channels follow the order of the sources and, within a
source, the order of its channel names (:attr:`ContextCombiner.channel_names` lists them as
``"<key>.<channel>"``). Values are standardised with fixed per-channel statistics passed in (the
model's training statistics: running statistics would drift away from what the model learnt and
would make replays depend on history). Where a source has no observation at or before a grid time,
or only one older than its ``max_staleness_ms``, the mask is False and the value 0: missing context
is explicit, never zeros posing as data.

Trade-off: an as-of join in a stream answers with what has *arrived*. If a weather record arrives
after the user step that needed it, that step used the previous one; replays are deterministic when
context is produced ahead of the posts it describes (as the replay tools do).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class Observation:
    """One context observation: event time (ms) and a float32 vector of channels."""

    time_ms: int
    values: np.ndarray


class ContextHistory:
    """Bounded, time-sorted history of one key's observations, with as-of look-ups.

    >>> h = ContextHistory(channels=1, max_observations=3)
    >>> for t, v in [(30, 3.0), (10, 1.0), (20, 2.0), (40, 4.0)]:
    ...     h.add(t, [v])
    >>> h.as_of(25).time_ms, h.as_of(5), len(h)
    (20, None, 3)
    >>> values, mask = h.series(35, length=4)
    >>> values[:, 0].tolist(), mask.tolist()
    ([0.0, 0.0, 2.0, 3.0], [False, False, True, True])
    """

    def __init__(self, channels: int, max_observations: int = 512, max_age_ms: int | None = None) -> None:
        if channels < 1 or max_observations < 1:
            raise ValueError("channels and max_observations must be at least 1")
        self.channels = channels
        self.max_observations = max_observations
        self.max_age_ms = max_age_ms
        self._times: list[int] = []
        self._values: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._times)

    def add(self, time_ms: int, values: Sequence[float] | np.ndarray) -> None:
        """Insert in time order (replacing one at the same time), then evict by count and age."""
        vector = np.asarray(values, dtype=np.float32).reshape(-1)
        if vector.shape != (self.channels,):
            raise ValueError(f"expected {self.channels} channels, got shape {np.shape(values)}")
        i = bisect.bisect_left(self._times, time_ms)
        if i < len(self._times) and self._times[i] == time_ms:
            self._values[i] = vector
        else:
            self._times.insert(i, time_ms)
            self._values.insert(i, vector)
        self._evict()

    def _evict(self) -> None:
        drop = max(0, len(self._times) - self.max_observations)
        if self.max_age_ms is not None:
            drop = max(drop, bisect.bisect_left(self._times, self._times[-1] - self.max_age_ms))
        del self._times[:drop], self._values[:drop]

    def as_of(self, time_ms: int) -> Observation | None:
        """The latest observation at or before ``time_ms``, or None."""
        i = bisect.bisect_right(self._times, time_ms)
        return Observation(self._times[i - 1], self._values[i - 1]) if i else None

    def series(self, time_ms: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``length`` observations at or before ``time_ms``, oldest first.

        Returns ``(values [length, channels] float32, mask [length] bool)``; when fewer exist, the
        leading rows are zeros with mask False.
        """
        end = bisect.bisect_right(self._times, time_ms)
        start = max(0, end - length)
        values = np.zeros((length, self.channels), dtype=np.float32)
        mask = np.zeros(length, dtype=bool)
        count = end - start
        if count:
            values[length - count :] = np.stack(self._values[start:end])
            mask[length - count :] = True
        return values, mask


@dataclass(frozen=True)
class ContextSource:
    """One key's place in the context layout: its channels and their fixed normalisation.

    ``mean``/``std`` default to 0/1 per channel (no normalisation). An observation older than
    ``max_staleness_ms`` before the grid time counts as missing (None: never stale).

    ``gap_values`` says, per channel, what a grid time whose own step has no observation reads (the
    latest one is a step or more older): None carries that observation's value forward, a number
    is the raw value to use instead (a market's return is 0 on a day without trading), NaN marks
    the channel missing. None (the default): every channel carries forward.
    """

    key: str
    channels: tuple[str, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    max_staleness_ms: int | None = None
    gap_values: tuple[float | None, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("mean", "std", "gap_values"):
            stats = getattr(self, name)
            if stats is not None and len(stats) != len(self.channels):
                raise ValueError(f"{self.key}: {name} has {len(stats)} values for {len(self.channels)} channels")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError(f"{self.key}: std must be positive")


@dataclass(frozen=True)
class ContextFrame:
    """The context of one step: ``values`` and ``mask`` ``[length, channels]``, grid ``times_ms`` ``[length]``."""

    values: np.ndarray
    mask: np.ndarray
    times_ms: np.ndarray


class ContextCombiner:
    """Builds a :class:`ContextFrame` from several keys' histories with a fixed channel layout.

    >>> weather = ContextSource("berlin", ("temp_c",), mean=(10.0,), std=(5.0,))
    >>> market = ContextSource("SPY", ("log_return",))
    >>> combiner = ContextCombiner([weather, market], length=2, step_ms=1_000)
    >>> combiner.channel_names
    ('berlin.temp_c', 'SPY.log_return')
    >>> h = ContextHistory(channels=1)
    >>> h.add(1_500, [20.0])
    >>> frame = combiner.build({"berlin": h}, time_ms=2_000)
    >>> frame.values.tolist(), frame.mask.tolist(), frame.times_ms.tolist()
    ([[0.0, 0.0], [2.0, 0.0]], [[False, False], [True, False]], [1000, 2000])

    With ``gap_values``, a step without an observation of its own does not repeat the last one:

    >>> returns = ContextSource("SPY", ("log_return",), gap_values=(0.0,))
    >>> r = ContextHistory(channels=1)
    >>> r.add(1_000, [0.5])
    >>> ContextCombiner([returns], length=2, step_ms=1_000).build({"SPY": r}, time_ms=2_500).values.tolist()
    [[0.5], [0.0]]
    """

    def __init__(self, sources: Sequence[ContextSource], length: int, step_ms: int) -> None:
        if length < 1 or step_ms < 1:
            raise ValueError("length and step_ms must be at least 1")
        keys = [s.key for s in sources]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate context keys: {keys}")
        self.sources = tuple(sources)
        self.length = length
        self.step_ms = step_ms
        self.channel_names = tuple(f"{s.key}.{c}" for s in self.sources for c in s.channels)
        self._mean = np.array([m for s in self.sources for m in (s.mean or [0.0] * len(s.channels))], np.float32)
        self._std = np.array([d for s in self.sources for d in (s.std or [1.0] * len(s.channels))], np.float32)

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    def build(self, histories: Mapping[str, ContextHistory], time_ms: int) -> ContextFrame:
        """Sample every source as of each grid time ending at ``time_ms``; a missing key is all-missing."""
        times = time_ms - self.step_ms * np.arange(self.length - 1, -1, -1, dtype=np.int64)
        values = np.zeros((self.length, self.n_channels), dtype=np.float32)
        mask = np.zeros((self.length, self.n_channels), dtype=bool)
        offset = 0
        for source in self.sources:
            width = len(source.channels)
            history = histories.get(source.key)
            if history is not None and history.channels != width:
                raise ValueError(f"{source.key}: history has {history.channels} channels, layout {width}")
            carry, fill = _gap_rule(source)
            for row, t in enumerate(times.tolist()):
                observation = history.as_of(t) if history is not None else None
                if observation is None or (
                    source.max_staleness_ms is not None and t - observation.time_ms > source.max_staleness_ms
                ):
                    continue
                row_values = observation.values
                if t - observation.time_ms >= self.step_ms:  # not this step's own observation
                    row_values = np.where(carry, row_values, fill)
                present = ~np.isnan(row_values)
                values[row, offset : offset + width] = np.where(present, row_values, 0.0)
                mask[row, offset : offset + width] = present
            offset += width
        values = np.where(mask, (values - self._mean) / self._std, np.float32(0.0)).astype(np.float32)
        return ContextFrame(values, mask, times)


def _gap_rule(source: ContextSource) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: whether a gap carries the last value forward, and the raw value it reads if not."""
    gaps = source.gap_values or (None,) * len(source.channels)
    return (np.array([g is None for g in gaps]),
            np.array([0.0 if g is None else g for g in gaps], dtype=np.float32))
