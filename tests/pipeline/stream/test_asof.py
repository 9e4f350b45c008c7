"""As-of look-ups, bounded histories and the context combiner."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moodshift.pipeline.stream.asof import ContextCombiner, ContextHistory, ContextSource

times_lists = st.lists(st.integers(-1_000, 1_000), max_size=40)


def value_of(t: int) -> list[float]:
    return [float(t), float(t) / 2]


def filled(times: list[int], **kwargs) -> ContextHistory:
    history = ContextHistory(channels=2, **kwargs)
    for t in times:
        history.add(t, value_of(t))
    return history


@settings(max_examples=80, deadline=None)
@given(times_lists, st.integers(1, 10), st.integers(-1_100, 1_100), st.integers(1, 6))
def test_as_of_and_series_match_brute_force_in_any_order(times, cap, query, length):
    history = filled(times, max_observations=cap)
    kept = sorted(set(times))[-cap:]
    assert len(history) == len(kept)
    before = [t for t in kept if t <= query]
    found = history.as_of(query)
    if before:
        assert found.time_ms == before[-1]
        assert found.values.tolist() == value_of(before[-1])
        assert found.values.dtype == np.float32
    else:
        assert found is None
    values, mask = history.series(query, length)
    expected = before[-length:]
    assert values.shape == (length, 2) and values.dtype == np.float32
    assert mask.tolist() == [False] * (length - len(expected)) + [True] * len(expected)
    assert values[mask].tolist() == [value_of(t) for t in expected]
    assert not values[~mask].any()


@settings(max_examples=50, deadline=None)
@given(times_lists, st.randoms(use_true_random=False))
def test_age_bound_keeps_the_same_observations_whatever_the_order(times, rnd):
    shuffled = list(times)
    rnd.shuffle(shuffled)
    a, b = filled(times, max_age_ms=300), filled(shuffled, max_age_ms=300)
    everything = 10 * (len(times) + 1)
    (values_a, mask_a), (values_b, mask_b) = a.series(10**9, everything), b.series(10**9, everything)
    assert np.array_equal(values_a, values_b) and np.array_equal(mask_a, mask_b)
    if times:
        newest = max(times)
        assert values_a[mask_a].tolist() == [value_of(t) for t in sorted({t for t in times if t >= newest - 300})]


def test_same_time_replaces_and_bad_shape_is_refused():
    history = ContextHistory(channels=2)
    history.add(5, [1.0, 2.0])
    history.add(5, [3.0, 4.0])
    assert len(history) == 1 and history.as_of(5).values.tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match="channels"):
        history.add(6, [1.0])


# -- combiner --------------------------------------------------------------------------------------

WEATHER = ContextSource("weather:berlin", ("temp", "wind"), mean=(10.0, 2.0), std=(5.0, 2.0), max_staleness_ms=2_000)
SPY = ContextSource("market:SPY", ("ret",))
QQQ = ContextSource("market:QQQ", ("ret",))


def test_combiner_layout_normalisation_staleness_and_missing():
    combiner = ContextCombiner([WEATHER, SPY, QQQ], length=3, step_ms=1_000)
    assert combiner.channel_names == ("weather:berlin.temp", "weather:berlin.wind", "market:SPY.ret", "market:QQQ.ret")
    weather = ContextHistory(channels=2)
    weather.add(0, [15.0, 4.0])
    spy = ContextHistory(channels=1)
    spy.add(1_000, [0.5])
    spy.add(2_500, [-0.25])
    frame = combiner.build({"weather:berlin": weather, "market:SPY": spy}, time_ms=3_000)
    assert frame.times_ms.tolist() == [1_000, 2_000, 3_000]
    assert frame.values.dtype == np.float32 and frame.values.shape == (3, 4)
    # weather: (15-10)/5, (4-2)/2 at 1000 ms; still fresh at 2000 ms (2000 ms old), stale at 3000 ms.
    assert frame.mask.tolist() == [
        [True, True, True, False],
        [True, True, True, False],
        [False, False, True, False],
    ]
    np.testing.assert_allclose(frame.values[:, :2], [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(frame.values[:, 2], [0.5, 0.5, -0.25])
    assert not frame.values[:, 3].any()  # QQQ never seen: explicit missing


def test_combiner_refuses_inconsistent_layouts():
    with pytest.raises(ValueError, match="duplicate"):
        ContextCombiner([SPY, SPY], length=1, step_ms=1)
    with pytest.raises(ValueError, match="mean"):
        ContextSource("k", ("a", "b"), mean=(0.0,))
    with pytest.raises(ValueError, match="std"):
        ContextSource("k", ("a",), std=(0.0,))
    combiner = ContextCombiner([WEATHER], length=1, step_ms=1)
    with pytest.raises(ValueError, match="channels"):
        combiner.build({"weather:berlin": ContextHistory(channels=3)}, time_ms=0)
