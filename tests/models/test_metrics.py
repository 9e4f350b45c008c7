from __future__ import annotations

import numpy as np
import pytest

from moodshift.models.baselines import DETECTORS, MajorityClass
from moodshift.models.metrics import (change_point_metrics, classification_metrics, f1_interval, match_change_points,
                                      paired_classification_intervals, rising_edges)


def test_a_detection_counts_once_and_never_before_the_change():
    m = match_change_points(true=[10, 12], detected=[9, 12], margin=3)
    # 9 is early (a false alarm); 12 may serve 10 (delay 2) and then 12 has nothing left.
    assert (m["true_positives"], m["false_positives"], m["false_negatives"], m["delays"]) == (1, 1, 1, [2])


def test_change_point_metrics_pool_over_timelines():
    m = change_point_metrics(true=[[5], [5, 20]], detected=[[6], [30, 21]], steps=2000, margin=3)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["mean_delay_steps"] == pytest.approx(1.0)
    assert m["false_alarms_per_1000_steps"] == pytest.approx(0.5)


def test_change_point_metrics_keep_each_timelines_counts_for_intervals():
    m = change_point_metrics(true=[[5], [5, 20]], detected=[[6], [30, 21]], steps=2000, margin=3)
    assert m["_timeline_counts"].tolist() == [[1, 0, 0], [1, 1, 1]]


def test_the_f1_interval_resamples_timelines_and_pairs_the_draws():
    rng = np.random.default_rng(0)
    # 300 timelines of a detector that finds about 60% of 3 change points and makes a false alarm now and then.
    tp = rng.binomial(3, 0.6, 300)
    detector = np.stack([tp, rng.binomial(2, 0.3, 300), 3 - tp], axis=1)
    f1 = 2 * tp.sum() / (2 * tp.sum() + detector[:, 1].sum() + detector[:, 2].sum())
    low, high = f1_interval(detector)
    assert low < f1 < high and high - low < 0.1
    assert f1_interval(detector[:30])[1] - f1_interval(detector[:30])[0] > high - low  # fewer timelines, wider
    # One more change point found on a tenth of the timelines: a small, consistent gain the paired
    # interval sees although each detector's own interval overlaps the other's.
    better = detector.copy()
    better[::10, 0] += np.minimum(better[::10, 2], 1)
    better[::10, 2] -= np.minimum(better[::10, 2], 1)
    gain_low, gain_high = f1_interval(better, detector)
    assert 0 < gain_low <= gain_high
    assert f1_interval(better)[0] < high


def test_paired_classification_intervals_measure_what_classification_metrics_measure():
    rng = np.random.default_rng(1)
    names = ("negative", "neutral", "positive")
    labels = rng.integers(0, 3, 3000)
    sharper = np.eye(3)[labels] + rng.normal(0, 0.8, (3000, 3))
    blunter = np.round(0.7 * np.eye(3)[labels] + rng.normal(0, 0.8, (3000, 3)), 1)  # ties, as VADER's scores have
    result = paired_classification_intervals(labels, sharper, blunter, names)
    ours, theirs = (classification_metrics(labels, s, names)["macro"] for s in (sharper, blunter))
    for key, measured in (("macro_f1", "f1"), ("valence_auc", "valence_auc")):
        assert result[key]["difference"] == pytest.approx(ours[measured] - theirs[measured], abs=1e-4)
        low, high = result[key]["interval_95"]
        assert 0 < low < result[key]["difference"] < high  # a real gap, seen as one
    # Fewer posts, the same kind of gap: a wider interval.
    few = paired_classification_intervals(labels[:300], sharper[:300], blunter[:300], names)
    assert np.diff(few["macro_f1"]["interval_95"])[0] > np.diff(result["macro_f1"]["interval_95"])[0]


def test_paired_intervals_drawn_by_group_see_that_a_groups_rows_go_together():
    """A timeline's steps share their user: the steps of one timeline are drawn together, and an
    interval over 30 timelines of 100 steps each is wider than one over 3,000 steps drawn alone."""
    rng = np.random.default_rng(2)
    names = ("negative", "neutral", "positive")
    labels = rng.integers(0, 3, 3000)
    timeline = np.repeat(np.arange(30), 100)
    # The model is better on some users' timelines and worse on others': a difference by timeline.
    skill = rng.normal(0, 1.0, 30)[timeline]
    ours = np.eye(3)[labels] * np.exp(skill)[:, None] + rng.normal(0, 0.8, (3000, 3))
    theirs = np.eye(3)[labels] + rng.normal(0, 0.8, (3000, 3))
    alone = paired_classification_intervals(labels, ours, theirs, names)
    together = paired_classification_intervals(labels, ours, theirs, names, groups=timeline)
    assert together["macro_f1"]["difference"] == alone["macro_f1"]["difference"]
    assert np.diff(together["macro_f1"]["interval_95"])[0] > 1.5 * np.diff(alone["macro_f1"]["interval_95"])[0]


def test_rising_edges_fire_once_per_excursion():
    probabilities = np.array([0.6, 0.7, 0.1, 0.1, 0.9, 0.9, 0.2])
    assert rising_edges(probabilities, 0.5) == [0, 4]
    assert rising_edges(probabilities, 0.95) == []


def test_classification_metrics_agree_with_counting():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    scores = np.eye(3)[[0, 1, 1, 1, 2, 2, 0]]
    m = classification_metrics(labels, scores, ("a", "b", "c"))
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["per_class"]["a"]["precision"] == pytest.approx(1 / 2)
    assert m["per_class"]["c"]["recall"] == pytest.approx(2 / 3)
    assert np.trace(np.array(m["confusion"])) == 5 and np.sum(m["confusion"]) == 7
    majority = classification_metrics(labels, MajorityClass().fit(labels).scores(["x"] * 7), ("a", "b", "c"))
    assert majority["macro"]["auc_ovr"] == pytest.approx(0.5)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_change_detector_finds_an_obvious_shift(name):
    make, grid = DETECTORS[name]
    values = np.r_[np.full(30, -0.8), np.full(30, 0.8)] + np.random.default_rng(0).normal(0, 0.05, 60)
    found = [make(setting)(values) for setting in grid]
    assert any(match_change_points([30], f, margin=3)["true_positives"] == 1 for f in found)
