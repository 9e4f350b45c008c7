"""DailyContext: live observations folded into the daily series the model was trained on."""

from __future__ import annotations

import numpy as np

from moodshift.pipeline.stream.context import DAY_MS, DailyContext

HOUR = 3_600_000


def context(length: int = 3) -> DailyContext:
    return DailyContext("berlin", "SPY", context_length=length, mean=(0, 0, 0, 0), std=(1, 1, 1, 1))


def test_a_redelivered_observation_changes_nothing() -> None:
    once, twice = context(), context()
    for ctx in (once, twice):
        ctx.add_weather("berlin", DAY_MS + HOUR, 10.0)
        ctx.add_market("SPY", DAY_MS + HOUR, close=100.0, volume=10.0)
        ctx.add_market("SPY", 2 * DAY_MS + HOUR, close=101.0, volume=20.0)
    twice.add_market("SPY", 2 * DAY_MS + HOUR, close=101.0, volume=20.0)
    twice.add_weather("berlin", DAY_MS + HOUR, 10.0)
    np.testing.assert_array_equal(once.series(4 * DAY_MS)[0], twice.series(4 * DAY_MS)[0])


def test_a_step_never_sees_its_own_day() -> None:
    ctx = context(length=1)
    ctx.add_weather("berlin", DAY_MS + HOUR, 10.0)
    before = ctx.series(DAY_MS + 2 * HOUR)[0].copy()
    ctx.add_weather("berlin", DAY_MS + 3 * HOUR, 30.0)
    np.testing.assert_array_equal(ctx.series(DAY_MS + 4 * HOUR)[0], before)
    assert ctx.series(2 * DAY_MS)[0][-1][:2].tolist() == [30.0, 10.0]


def test_other_locations_and_symbols_are_ignored() -> None:
    ctx, plain = context(), context()
    for c in (ctx, plain):
        c.add_weather("berlin", DAY_MS, 5.0)
    ctx.add_weather("paris", DAY_MS, 25.0)
    ctx.add_market("QQQ", DAY_MS, close=1.0, volume=1.0)
    np.testing.assert_array_equal(ctx.series(3 * DAY_MS)[0], plain.series(3 * DAY_MS)[0])


def test_a_day_without_trading_has_a_zero_return_and_the_last_volume() -> None:
    ctx = context(length=3)
    ctx.add_market("SPY", DAY_MS + HOUR, close=100.0, volume=np.e ** 2)
    ctx.add_market("SPY", 2 * DAY_MS + HOUR, close=110.0, volume=np.e ** 3)
    # day 3: no bars (a weekend or holiday)
    values, _ = ctx.series(4 * DAY_MS)
    returns, volumes = values[:, 2], values[:, 3]
    assert returns[1] == np.float32(np.log(1.1)) and returns[2] == 0.0
    np.testing.assert_allclose(volumes[1:], [3.0, 3.0], rtol=1e-6)


def test_the_checkpoint_statistics_standardise_the_series() -> None:
    ctx = DailyContext("berlin", "SPY", context_length=1, mean=(10, 0, 0, 0), std=(2, 1, 1, 1))
    ctx.add_weather("berlin", DAY_MS, 14.0)
    values, present = ctx.series(2 * DAY_MS)
    assert values[-1][0] == 2.0 and present


def test_a_series_built_once_a_day_still_follows_every_observation() -> None:
    ctx = context(length=2)
    ctx.add_weather("berlin", DAY_MS + HOUR, 10.0)
    first = ctx.series(2 * DAY_MS + HOUR)[0]
    assert ctx.series(2 * DAY_MS + 5 * HOUR)[0] is first  # the same day: built once
    assert not first.flags.writeable  # shared by every step of the day
    ctx.add_weather("berlin", DAY_MS + 2 * HOUR, 20.0)
    assert ctx.series(2 * DAY_MS + 6 * HOUR)[0][-1][:2].tolist() == [20.0, 10.0]
    ctx.add_market("SPY", DAY_MS + HOUR, close=100.0, volume=10.0)
    assert ctx.series(2 * DAY_MS + 7 * HOUR)[0][-1][3] == np.float32(np.log(10.0))


def test_a_series_an_observation_overtook_while_it_was_built_is_rebuilt() -> None:
    # The feeds arrive on the worker's event loop while a batch builds series in the model thread.
    ctx = context(length=1)
    ctx.add_weather("berlin", DAY_MS + HOUR, 10.0)
    build = ctx.combiner.build

    def overtaken(*args, **kwargs):
        frame = build(*args, **kwargs)
        ctx.combiner.build = build
        ctx.add_weather("berlin", DAY_MS + 2 * HOUR, 20.0)  # lands after the histories were read
        return frame

    ctx.combiner.build = overtaken
    assert ctx.series(2 * DAY_MS)[0][-1][:2].tolist() == [10.0, 10.0]
    assert ctx.series(2 * DAY_MS)[0][-1][:2].tolist() == [20.0, 10.0]


def test_a_series_built_while_an_observation_is_being_added_is_rebuilt() -> None:
    ctx = context(length=1)
    ctx.add_weather("berlin", DAY_MS + HOUR, 10.0)
    add = ctx._weather.add

    def interrupted(*args, **kwargs):
        ctx.series(2 * DAY_MS)  # the model thread builds between the loop's steps of this add
        add(*args, **kwargs)

    ctx._weather.add = interrupted
    ctx.add_weather("berlin", DAY_MS + 2 * HOUR, 20.0)
    ctx._weather.add = add
    assert ctx.series(2 * DAY_MS)[0][-1][:2].tolist() == [20.0, 10.0]
