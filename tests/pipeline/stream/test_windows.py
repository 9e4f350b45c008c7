"""Sliding windows from panes, the per-user watermark, late events and the modality aggregate."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moodshift.pipeline.stream.aggregate import ModalityAggregate, ModalityFeatures
from moodshift.pipeline.stream.windows import ClosedWindow, LateEvent, UserWindows, WindowSpec

SPEC = WindowSpec(size_ms=4_000, slide_ms=1_000, allowed_lateness_ms=2_500)


def features(i: int) -> ModalityFeatures:
    """Deterministic, distinguishable features for event number ``i``."""
    return ModalityFeatures(
        tokens=[i, i + 1] if i % 3 else [],
        image=np.array([i, -i], dtype=np.float32) if i % 2 else None,
        audio=np.array([[i], [2 * i]], dtype=np.float32) if i % 5 == 0 else None,
    )


def run(events: list[tuple[int, str]], spec: WindowSpec = SPEC, flush: bool = True):
    """Feed ``(time, id)`` events to one user; return (closed windows, late events)."""
    user = UserWindows("u", spec, ModalityAggregate)
    closed: list[ClosedWindow] = []
    late: list[LateEvent] = []
    for t, event_id in events:
        result = user.add(t, event_id, features(int(event_id)))
        if isinstance(result, LateEvent):
            late.append(result)
        else:
            closed.extend(result)
    if flush:
        closed.extend(user.flush())
    return closed, late


def summary(window: ClosedWindow) -> tuple:
    agg = window.aggregate
    return (
        window.start_ms,
        window.end_ms,
        agg.event_count,
        sorted(agg.event_ids),
        agg.tokens,
        agg.modalities,
        agg.min_event_time_ms,
        agg.max_event_time_ms,
    )


def oracle(events: list[tuple[int, str]], spec: WindowSpec) -> list[tuple[int, int, list[str]]]:
    """Brute force: every non-empty window [end - size, end) over the given events."""
    ends = sorted(
        {(t // spec.slide_ms + j) * spec.slide_ms for t, _ in events for j in range(1, spec.panes_per_window + 1)}
    )
    result = []
    for end in ends:
        ids = sorted(i for t, i in events if end - spec.size_ms <= t < end)
        if ids:
            result.append((end - spec.size_ms, end, ids))
    return result


def timelines(max_events: int = 40) -> st.SearchStrategy[list[tuple[int, str]]]:
    """Event-time-sorted events with unique ids, possibly with negative times and long gaps."""
    gaps = st.lists(st.sampled_from([0, 1, 250, 999, 1_000, 1_001, 3_000, 20_000]), max_size=max_events)
    return st.tuples(st.integers(-5_000, 5_000), gaps).map(
        lambda start_gaps: [
            (start_gaps[0] + sum(start_gaps[1][: i + 1]), str(i)) for i in range(len(start_gaps[1]))
        ]
    )


# -- spec ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(size_ms=1_500, slide_ms=1_000),
        dict(size_ms=0, slide_ms=1),
        dict(size_ms=10, slide_ms=10, allowed_lateness_ms=-1),
    ],
)
def test_spec_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        WindowSpec(**kwargs)


# -- windows and watermark -------------------------------------------------------------------------


def test_window_closes_exactly_when_watermark_reaches_its_end():
    spec = WindowSpec(size_ms=2_000, slide_ms=1_000, allowed_lateness_ms=500)
    user = UserWindows("u", spec, ModalityAggregate)
    assert user.add(100, "a", ModalityFeatures()) == []
    assert user.add(1_499, "b", ModalityFeatures()) == []  # watermark 999 < 1000
    closed = user.add(1_500, "c", ModalityFeatures())  # watermark 1000: [-1000, 1000) closes
    assert [(w.start_ms, w.end_ms, w.aggregate.event_ids) for w in closed] == [(-1_000, 1_000, ["a"])]
    assert user.watermark_ms == 1_000


def test_gap_emits_only_windows_with_events_in_end_order():
    spec = WindowSpec(size_ms=2_000, slide_ms=1_000)
    closed, _ = run([(0, "0"), (100_000, "1")], spec, flush=False)
    assert [(w.start_ms, w.end_ms) for w in closed] == [(-1_000, 1_000), (0, 2_000)]


def test_late_event_is_returned_with_reason_and_not_counted():
    user = UserWindows("u", SPEC, ModalityAggregate)
    user.add(10_000, "0", ModalityFeatures())  # watermark 7500: windows ending <= 7000 closed
    late = user.add(6_999, "1", ModalityFeatures())
    assert late == LateEvent("u", "1", 6_999, 7_500, "late")
    # pane [7000, 8000) has its first window (ending 8000) still open: accepted.
    assert user.add(7_000, "2", ModalityFeatures()) == []
    assert sorted(i for w in user.flush() for i in w.aggregate.event_ids) == ["0"] * 4 + ["2"] * 4


def test_advance_watermark_closes_idle_user_and_never_moves_back():
    user = UserWindows("u", SPEC, ModalityAggregate)
    user.add(0, "0", ModalityFeatures())
    assert [w.end_ms for w in user.advance_watermark(2_000)] == [1_000, 2_000]
    assert user.advance_watermark(1_000) == []
    assert user.watermark_ms == 2_000
    assert [w.end_ms for w in user.flush()] == [3_000, 4_000]
    assert user.flush() == [] and user.pane_count == 0


def test_flush_makes_older_events_late():
    user = UserWindows("u", SPEC, ModalityAggregate)
    user.add(0, "0", ModalityFeatures())
    user.flush()
    assert isinstance(user.add(3_999, "1", ModalityFeatures()), LateEvent)
    assert user.add(4_000, "2", ModalityFeatures()) == []


@settings(max_examples=60, deadline=None)
@given(timelines())
def test_sorted_input_matches_brute_force(events):
    closed, late = run(events)
    assert late == []
    assert [(w.start_ms, w.end_ms, sorted(w.aggregate.event_ids)) for w in closed] == oracle(events, SPEC)


@settings(max_examples=60, deadline=None)
@given(timelines(), st.randoms(use_true_random=False))
def test_shuffled_within_lateness_gives_the_same_windows(events, rnd):
    # Arrival order by time + delay, delay < allowed lateness: nothing is late, everything moves.
    delays = [rnd.randrange(SPEC.allowed_lateness_ms) for _ in events]
    shuffled = [e for _, e in sorted(zip([t + d for (t, _), d in zip(events, delays)], events))]
    sorted_closed, _ = run(events)
    shuffled_closed, late = run(shuffled)
    assert late == []
    assert [summary(w) for w in shuffled_closed] == [summary(w) for w in sorted_closed]
    for a, b in zip(shuffled_closed, sorted_closed):
        for attr in ("image_mean", "audio_mean"):
            x, y = getattr(a.aggregate, attr), getattr(b.aggregate, attr)
            assert (x is None and y is None) or np.allclose(x, y, rtol=1e-6)


@settings(max_examples=80, deadline=None)
@given(timelines(), st.randoms(use_true_random=False))
def test_any_order_emits_once_in_order_and_loses_nothing(events, rnd):
    arrival = list(events)
    rnd.shuffle(arrival)
    user = UserWindows("u", SPEC, ModalityAggregate)
    closed, late, max_panes = [], [], 0
    bound = SPEC.panes_per_window + -(-SPEC.allowed_lateness_ms // SPEC.slide_ms) + 1
    for t, event_id in arrival:
        result = user.add(t, event_id, ModalityFeatures())
        (late.append if isinstance(result, LateEvent) else closed.extend)(result)
        max_panes = max(max_panes, user.pane_count)
    closed.extend(user.flush())
    ends = [w.end_ms for w in closed]
    assert ends == sorted(set(ends))  # each window once, in end order
    assert max_panes <= bound  # memory bounded by open panes
    late_ids = {e.event_id for e in late}
    accepted = [e for e in events if e[1] not in late_ids]
    assert len(late) + len(accepted) == len(events)  # every event accounted for
    assert [(w.start_ms, w.end_ms, sorted(w.aggregate.event_ids)) for w in closed] == oracle(accepted, SPEC)
    for event in late:
        assert (event.event_time_ms // SPEC.slide_ms + 1) * SPEC.slide_ms <= event.watermark_ms


@settings(max_examples=40, deadline=None)
@given(timelines(), st.integers(0, 40))
def test_state_round_trip_through_json_mid_stream(events, cut):
    straight, _ = run(events)
    user = UserWindows("u", SPEC, ModalityAggregate)
    closed = []
    for i, (t, event_id) in enumerate(events):
        if i == cut:
            user = UserWindows.from_dict(json.loads(json.dumps(user.to_dict())), SPEC, ModalityAggregate)
        closed.extend(user.add(t, event_id, features(int(event_id))))
    closed.extend(user.flush())
    assert [summary(w) for w in closed] == [summary(w) for w in straight]


def test_restore_refuses_a_different_slide():
    user = UserWindows("u", SPEC, ModalityAggregate)
    with pytest.raises(ValueError, match="slide"):
        UserWindows.from_dict(user.to_dict(), WindowSpec(size_ms=4_000, slide_ms=2_000), ModalityAggregate)


# -- the modality aggregate ------------------------------------------------------------------------


class SmallAggregate(ModalityAggregate):
    max_tokens = 5
    max_event_ids = 3


def test_aggregate_means_modalities_and_times():
    agg = ModalityAggregate()
    agg.add(5, "x", ModalityFeatures(audio=np.array([[1.0, 2.0], [3.0, 4.0]])))
    agg.add(3, "y", ModalityFeatures(tokens=[9]))
    assert agg.audio_mean.dtype == np.float32
    assert agg.audio_mean.tolist() == [2.0, 3.0]
    assert agg.image_mean is None
    assert agg.modalities == ("audio", "text")
    assert (agg.min_event_time_ms, agg.max_event_time_ms, agg.event_count) == (3, 5, 2)


def test_token_cap_keeps_latest_events_and_truncates_long_ones():
    agg = SmallAggregate()
    agg.add(1, "a", ModalityFeatures(tokens=[1, 2]))
    agg.add(3, "c", ModalityFeatures(tokens=[5, 6]))
    agg.add(2, "b", ModalityFeatures(tokens=[3, 4]))
    assert agg.tokens == [3, 4, 5, 6] and agg.tokens_dropped == 2
    agg.add(4, "d", ModalityFeatures(tokens=list(range(100, 108))))
    assert agg.tokens == [100, 101, 102, 103, 104] and agg.tokens_dropped == 9
    assert agg.event_ids == ["b", "c", "d"]
    assert agg.modalities == ("text",)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.lists(st.integers(0, 9), max_size=4)), max_size=12),
    st.randoms(use_true_random=False),
    st.integers(0, 12),
)
def test_aggregate_is_independent_of_arrival_order_and_pane_split(items, rnd, split):
    events = [(t, f"e{i}", ModalityFeatures(tokens=tokens)) for i, (t, tokens) in enumerate(items)]
    whole = SmallAggregate()
    for e in events:
        whole.add(*e)
    shuffled = list(events)
    rnd.shuffle(shuffled)
    first, second = SmallAggregate(), SmallAggregate()
    for e in shuffled[:split]:
        first.add(*e)
    for e in shuffled[split:]:
        second.add(*e)
    second_before = second.to_dict()
    first.merge(second)
    assert second.to_dict() == second_before  # merge leaves its argument alone
    assert first.to_dict() == whole.to_dict()


def test_aggregate_round_trips_through_json_and_rejects_mixed_dimensions():
    agg = ModalityAggregate()
    for i in range(1, 11):
        agg.add(i, str(i), features(i))
    again = ModalityAggregate.from_dict(json.loads(json.dumps(agg.to_dict())))
    assert again.to_dict() == agg.to_dict()
    np.testing.assert_array_equal(again.image_mean, agg.image_mean)
    with pytest.raises(ValueError, match="shape"):
        agg.add(0, "bad", ModalityFeatures(image=np.zeros(3)))


def test_a_stored_aggregate_stays_as_stored_while_the_live_one_goes_on():
    """to_dict shares the entries (tuples) with the live aggregate instead of copying them: what a
    record stored must not change when the aggregate, or one restored from it, adds and drops entries."""
    agg = ModalityAggregate()
    agg.add(1_000, "a", ModalityFeatures(tokens=[1, 2]))
    stored = agg.to_dict()
    as_stored = json.dumps(stored)
    restored = ModalityAggregate.from_dict(stored)
    for goes_on in (agg, restored):
        goes_on.add(2_000, "b", ModalityFeatures(tokens=[3] * 600))  # over max_tokens: "a" is dropped
        assert goes_on.event_ids == ["a", "b"] and goes_on.text_events == [("b", (3,) * 512)]
    assert json.dumps(stored) == as_stored
    # restored from memory or from JSON: the same aggregate, the same bytes
    from_json = ModalityAggregate.from_dict(json.loads(as_stored))
    assert json.dumps(from_json.to_dict()) == as_stored == json.dumps(ModalityAggregate.from_dict(stored).to_dict())


def test_window_merge_does_not_alias_pane_vectors():
    spec = WindowSpec(size_ms=2_000, slide_ms=1_000)
    user = UserWindows("u", spec, ModalityAggregate)
    user.add(0, "a", ModalityFeatures(image=np.array([1.0])))
    first = user.add(1_000, "b", ModalityFeatures(image=np.array([3.0])))
    later = user.flush()
    assert [w.aggregate.image_mean.tolist() for w in first + later] == [[1.0], [2.0], [3.0]]


def test_random_replay_is_deterministic():
    rnd = random.Random(7)
    events = [(rnd.randrange(0, 60_000), str(i)) for i in range(200)]
    a, late_a = run(events)
    b, late_b = run(events)
    assert [summary(w) for w in a] == [summary(w) for w in b] and late_a == late_b
