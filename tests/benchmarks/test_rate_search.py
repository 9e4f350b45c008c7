"""The end-to-end benchmark's search for the highest rate a processor keeps flat (plain logic)."""

from __future__ import annotations

import doctest

from benchmarks import through_kafka
from benchmarks.through_kafka import Trial, next_rate


def run_search(capacity: float, first_rate: float, max_trials: int, collapse: float = 1.0) -> list[Trial]:
    """The trials the search runs against a processor that keeps up with up to ``capacity`` posts/s,
    consumes that much when offered up to twice as much and ``capacity / collapse`` when offered more
    (overload costing it capacity, as measured)."""
    trials: list[Trial] = []
    rate = first_rate
    while rate is not None and len(trials) < max_trials:
        flat = rate <= capacity
        consumed = rate if flat else capacity if rate <= 2 * capacity else capacity / collapse
        trials.append(Trial(rate, rate, consumed, 0 if flat else 1000, flat, 0.5))
        rate = next_rate(trials)
    return trials


def test_the_examples_run() -> None:
    assert doctest.testmod(through_kafka, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_a_collapsed_first_trial_does_not_pull_the_search_far_below_capacity() -> None:
    # Offered 5,000 posts/s, a worker that keeps 1,000 flat consumed 200 (as seen, docs/benchmarks.md).
    trials = run_search(capacity=1000, first_rate=5000, max_trials=3, collapse=5)
    best = max(t.input_rate for t in trials if t.sustained)
    assert best >= 0.85 * 1000, [round(t.target_rate) for t in trials]


def test_the_search_stops_once_its_bounds_are_within_15_percent() -> None:
    trials = run_search(capacity=1000, first_rate=5000, max_trials=20)
    flat = max(t.input_rate for t in trials if t.sustained)
    failed = min(t.target_rate for t in trials if not t.sustained)
    assert flat <= 1000 < failed <= 1.15 * flat
    assert len(trials) < 20


def test_with_no_failure_it_goes_higher() -> None:
    assert next_rate([Trial(100, 100, 100, 0, True, 0.5)]) == 150


def test_a_failed_trial_below_an_earlier_ones_consumption_does_not_repeat_itself() -> None:
    # Seen (2026-12-06): offered 1,741 a worker consumed 1,428, then failed at 95% of that, 1,357,
    # consuming 1,240; the search ran 1,357 again.
    trials = [Trial(3818, 3171, 836, 37610, False, 0.4), Trial(1741, 1738, 1428, 4983, False, 0.6),
              Trial(1357, 1356, 1240, 1811, False, 0.7)]
    assert next_rate(trials) < 0.95 * 1357
