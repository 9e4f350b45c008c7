"""Weather and market observations → the model's daily context series, as of a step's event time.

The model was trained on daily channels (``ModelConfig.context_channels``): ``temp_max`` and
``temp_min`` of one location, ``market_log_return`` and ``market_log_volume`` of one market symbol.
Live feeds arrive as individual observations (hourly weather, intraday or daily bars), so
:class:`DailyContext` folds them into one value per UTC day and key, kept in
:class:`pipeline.stream.asof.ContextHistory` (re-adding a day replaces it, so redeliveries change nothing),
and :meth:`DailyContext.series` samples the last ``context_length`` days as of a time with
:class:`pipeline.stream.asof.ContextCombiner`, standardised with the checkpoint's statistics.

- weather: a day's max and min of the observed temperatures (°C);
- market: a day's close is the close of its latest bar, its volume the sum over its distinct bars;
  ``market_log_return`` = log(close / previous day's close), ``market_log_volume`` = log(volume).

As in training (``models.datasets.external``), a step sees the ``context_length`` days *before* its
own day: values complete at its event time, never a day still in progress; a day without weather
observations is missing, a day without trading has a zero return and the last day's volume
(``tests/pipeline/stream/test_context_parity.py`` feeds the training series through this class).

>>> ctx = DailyContext("berlin", "SPY", context_length=2, mean=(0, 0, 0, 0), std=(1, 1, 1, 1))
>>> DAY = 86_400_000
>>> ctx.add_weather("berlin", DAY + 3_600_000, 10.0); ctx.add_weather("berlin", DAY + 7_200_000, 14.0)
>>> ctx.add_market("SPY", DAY - 1, close=100.0, volume=0.0); ctx.add_market("SPY", DAY + 1, 110.0, 5.0)
>>> values, present = ctx.series(2 * DAY + 5)  # a step on day 2 sees day 1
>>> [round(float(v), 4) for v in values[-1]], present
([14.0, 10.0, 0.0953, 1.6094], True)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from moodshift.pipeline.stream.asof import ContextCombiner, ContextHistory, ContextSource

DAY_MS = 86_400_000
WEATHER_CHANNELS = ("temp_max", "temp_min")
MARKET_CHANNELS = ("market_log_return", "market_log_volume")


class DailyContext:
    """Daily context for one weather location and one market symbol.

    Observations of other keys are ignored (a worker serves one context layout: the model's).
    Memory is bounded: ``keep_days`` days of history per key.
    """

    def __init__(
        self,
        location: str,
        symbol: str,
        context_length: int,
        mean: Sequence[float],
        std: Sequence[float],
        channels: Sequence[str] = WEATHER_CHANNELS + MARKET_CHANNELS,
        keep_days: int | None = None,
    ) -> None:
        if tuple(channels) != WEATHER_CHANNELS + MARKET_CHANNELS:
            raise ValueError(
                f"the model's context channels {tuple(channels)} are not the layout this pipeline "
                f"derives ({WEATHER_CHANNELS + MARKET_CHANNELS})"
            )
        self.location, self.symbol = location, symbol
        self.keep_days = keep_days or context_length + 7
        mean, std = tuple(map(float, mean)), tuple(map(float, std))
        self.combiner = ContextCombiner(
            [
                # As the training series (models.datasets.external) has them: a day without weather
                # is a gap; a day without trading has a zero return and the last volume.
                ContextSource(location, WEATHER_CHANNELS, mean[:2], std[:2], gap_values=(math.nan, math.nan)),
                ContextSource(symbol, MARKET_CHANNELS, mean[2:], std[2:], max_staleness_ms=5 * DAY_MS,
                              gap_values=(0.0, None)),
            ],
            length=context_length,
            step_ms=DAY_MS,
        )
        history_args = dict(max_observations=self.keep_days, max_age_ms=self.keep_days * DAY_MS)
        self._weather = ContextHistory(channels=2, **history_args)
        self._market = ContextHistory(channels=2, **history_args)
        self._temps: dict[int, tuple[float, float]] = {}  # day → (max, min)
        self._bars: dict[int, dict[int, tuple[float, float]]] = {}  # day → bar time → (close, volume)
        # Every step of a day sees the same series, and a batch holds thousands of steps of a few
        # days: built once per day and observation taken. The feeds arrive on the worker's event
        # loop while batches run in its model thread, so an entry holds the version it was built
        # from, read before building and bumped after an observation changed the histories: one
        # that an observation overtook is rebuilt, never served.
        self._version = 0
        self._series: dict[int, tuple[int, np.ndarray, bool]] = {}  # day → (version, values, present)

    def add_weather(self, location: str, time_ms: int, temperature_c: float | None) -> None:
        if location != self.location or temperature_c is None or not math.isfinite(temperature_c):
            return
        day = time_ms // DAY_MS
        high, low = self._temps.get(day, (temperature_c, temperature_c))
        self._temps[day] = (max(high, temperature_c), min(low, temperature_c))
        self._weather.add(day * DAY_MS, self._temps[day])
        self._prune(self._temps, day)
        self._version += 1  # after the change: a series built before it was read is never served

    def add_market(self, symbol: str, time_ms: int, close: float, volume: float) -> None:
        if symbol != self.symbol or not (close > 0 and math.isfinite(close)):
            return
        day = time_ms // DAY_MS
        self._bars.setdefault(day, {})[time_ms] = (close, max(volume, 0.0))
        self._prune(self._bars, day)
        # A bar can change this day's return and the next known day's.
        days = sorted(self._bars)
        for earlier, later in zip(days, days[1:]):
            if later >= day and earlier <= day:
                self._market.add(later * DAY_MS, self._daily_values(later, earlier))
        if days[0] == day:  # the first known day has volume but no return
            self._market.add(day * DAY_MS, self._daily_values(day, None))
        self._version += 1  # after the change, as in add_weather

    def series(self, time_ms: int) -> tuple[np.ndarray, bool]:
        """``[context_length, 4]`` standardised values of the days before ``time_ms``'s day, and
        whether any is present. The values are shared by every step of the day: read-only."""
        day, version = time_ms // DAY_MS, self._version
        cached = self._series.get(day)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        frame = self.combiner.build({self.location: self._weather, self.symbol: self._market}, day * DAY_MS - 1)
        values, present = frame.values, bool(frame.mask.any())
        values.flags.writeable = False
        if len(self._series) >= self.keep_days:  # bounded, like the histories
            self._series.clear()
        self._series[day] = (version, values, present)
        return values, present

    def _daily_values(self, day: int, previous_day: int | None) -> tuple[float, float]:
        bars = self._bars[day]
        close = bars[max(bars)][0]
        volume = sum(v for _, v in bars.values())
        if previous_day is None:
            log_return = 0.0
        else:
            previous = self._bars[previous_day]
            log_return = math.log(close / previous[max(previous)][0])
        return log_return, math.log(volume) if volume > 0 else 0.0

    def _prune(self, by_day: dict, newest: int) -> None:
        horizon = max(by_day) - self.keep_days
        for day in [d for d in by_day if d < horizon]:
            del by_day[day]
