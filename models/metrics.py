"""Metrics: per-step emotion classification and change-point detection within a margin.

>>> match_change_points(true=[10, 30], detected=[11, 20, 31, 33], margin=3)
{'true_positives': 2, 'false_positives': 2, 'false_negatives': 0, 'delays': [1, 1]}
>>> rising_edges(np.array([0.1, 0.7, 0.8, 0.2, 0.9]), threshold=0.5)
[1, 4]
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Sized

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score


def classification_metrics(labels: np.ndarray, scores: np.ndarray, label_names: Sequence[str]) -> dict:
    """Accuracy, per-class and macro precision/recall/F1, one-vs-rest AUC, confusion matrix, and
    the valence AUC: how well score(positive) - score(negative) ranks positive above negative posts.

    ``scores``: [N, C], any per-class scores (probabilities or not); the prediction is the argmax.
    Macro means are over the classes the labels have (a two-class file has no neutral to average in;
    predicting neutral there still costs precision and recall of the others).
    """
    n = len(label_names)
    predicted = scores.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=range(n), zero_division=0)
    auc = [float(roc_auc_score(labels == k, scores[:, k])) if 0 < (labels == k).sum() < len(labels)
           else float("nan") for k in range(n)]
    present = support > 0
    return {
        "n": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        "macro": {"precision": float(precision[present].mean()), "recall": float(recall[present].mean()),
                  "f1": float(f1[present].mean()), "auc_ovr": float(np.nanmean(auc)),
                  "valence_auc": valence_auc(labels, scores, label_names)},
        "per_class": {name: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                             "auc_ovr": auc[k], "support": int(support[k])}
                      for k, name in enumerate(label_names)},
        "confusion": confusion_matrix(labels, predicted, labels=range(n)).tolist(),
    }


def valence_auc(labels: np.ndarray, scores: np.ndarray, label_names: Sequence[str]) -> float:
    """AUC of score(positive) - score(negative) over the posts labelled positive or negative (NaN
    without both, or without those label names).

    >>> valence_auc(np.array([0, 2, 1, 2]), np.array([[.8, .1, .1], [.2, .2, .6], [.1, .8, .1], [.5, .1, .4]]),
    ...             ("negative", "neutral", "positive"))
    1.0
    """
    if "negative" not in label_names or "positive" not in label_names:
        return float("nan")
    negative, positive = label_names.index("negative"), label_names.index("positive")
    polar = (labels == negative) | (labels == positive)
    if not (labels[polar] == positive).any() or not (labels[polar] == negative).any():
        return float("nan")
    return float(roc_auc_score(labels[polar] == positive, scores[polar, positive] - scores[polar, negative]))


def bootstrap_counts(units: int, rounds: int, seed: int) -> np.ndarray:
    """[rounds, units]: how often each of ``units`` is drawn in each of ``rounds`` draws of ``units``
    with replacement. One set of draws weighs both sides of a paired comparison; the intervals of
    :func:`paired_classification_intervals` and :func:`f1_interval` are percentiles over them.

    >>> counts = bootstrap_counts(units=4, rounds=3, seed=0)
    >>> counts.shape, counts.sum(axis=1).tolist()
    ((3, 4), [4, 4, 4])
    """
    drawn = np.random.default_rng(seed).integers(0, units, (rounds, units))
    return np.bincount((drawn + units * np.arange(rounds)[:, None]).ravel(),
                       minlength=rounds * units).reshape(rounds, units)


def paired_classification_intervals(labels: np.ndarray, scores: np.ndarray, baseline_scores: np.ndarray,
                                    label_names: Sequence[str], groups: np.ndarray | None = None,
                                    rounds: int = 1000, seed: int = 0) -> dict[str, dict]:
    """How much ``scores`` beat ``baseline_scores`` ([N, C] each, on the same rows) in macro F1 and
    valence AUC (as :func:`classification_metrics` computes them), with 95% bootstrap intervals: the
    rows drawn with replacement, the same draws for both. ``groups`` ([N]) makes the unit drawn a
    group of rows (each step's timeline: one user's steps are not independent of each other); by
    default each row is its own (posts scored each alone).

    >>> labels = np.array([0, 0, 1, 1, 2, 2] * 20)
    >>> good = np.eye(3)[labels] + 0.1
    >>> result = paired_classification_intervals(labels, good, good, ("negative", "neutral", "positive"))
    >>> result["macro_f1"], result["valence_auc"]["interval_95"]
    ({'difference': 0.0, 'interval_95': [0.0, 0.0]}, [0.0, 0.0])
    """
    measures = {"macro_f1": [_weighted_macro_f1(labels, s.argmax(axis=1), len(label_names))
                             for s in (scores, baseline_scores)]}
    if "negative" in label_names and "positive" in label_names:
        measures["valence_auc"] = [_weighted_valence_auc(labels, s, label_names) for s in (scores, baseline_scores)]
    _, group = np.unique(np.arange(len(labels)) if groups is None else groups, return_inverse=True)
    n_groups = group.max(initial=-1) + 1
    differences: dict[str, list[float]] = {name: [] for name in measures}
    for counts in bootstrap_counts(n_groups, rounds, seed):
        weights = counts[group]  # each row counted as often as its group was drawn
        for name, (ours, theirs) in measures.items():
            differences[name].append(ours(weights) - theirs(weights))
    everyone = np.ones(len(labels))
    return {name: {"difference": round(float(ours(everyone) - theirs(everyone)), 4),
                   "interval_95": [round(float(v), 4) for v in np.nanpercentile(differences[name], [2.5, 97.5])]}
            for name, (ours, theirs) in measures.items()}


def _weighted_macro_f1(labels: np.ndarray, predicted: np.ndarray, n: int) -> Callable[[np.ndarray], float]:
    """Macro F1 over the classes present, each post counted ``w`` times."""
    cells = labels * n + predicted

    def macro_f1(w: np.ndarray) -> float:
        confusion = np.bincount(cells, weights=w, minlength=n * n).reshape(n, n)
        true, found = confusion.sum(1), confusion.sum(0)
        f1 = np.divide(2 * np.diag(confusion), true + found, out=np.zeros(n), where=true + found > 0)
        return float(f1[true > 0].mean())
    return macro_f1


def _weighted_valence_auc(labels: np.ndarray, scores: np.ndarray, label_names: Sequence[str]
                          ) -> Callable[[np.ndarray], float]:
    """:func:`valence_auc`, each post counted ``w`` times (ties count half, as in roc_auc_score)."""
    negative, positive = label_names.index("negative"), label_names.index("positive")
    polar = np.flatnonzero((labels == negative) | (labels == positive))
    is_positive = labels[polar] == positive
    _, level = np.unique(scores[polar, positive] - scores[polar, negative], return_inverse=True)
    levels = level.max(initial=-1) + 1

    def auc(w: np.ndarray) -> float:
        weights = w[polar]
        up = np.bincount(level[is_positive], weights=weights[is_positive], minlength=levels)
        down = np.bincount(level[~is_positive], weights=weights[~is_positive], minlength=levels)
        pairs = up.sum() * down.sum()
        return float(np.sum(up * (np.cumsum(down) - 0.5 * down)) / pairs) if pairs else float("nan")
    return auc


#: Plutchik's emotions that read as positive or negative valence (surprise is neither).
POSITIVE_EMOTIONS = ("anticipation", "joy", "trust")
NEGATIVE_EMOTIONS = ("anger", "disgust", "fear", "sadness")


def named_emotion_agreement(scores: np.ndarray, weak: np.ndarray, labels: np.ndarray,
                            label_names: Sequence[str], names: Sequence[str]) -> dict:
    """How a model's named-emotion scores ``[N, K]`` agree with a weak labeller's ``[N, K]`` on the
    same held-out posts (Pearson r and mean absolute error per emotion), and with the human polarity
    labels: the valence AUC of mean(positive emotions) − mean(negative emotions), for the model and,
    as the reference it learned from, for the weak labeller; and the mean score per human label.

    >>> weak = np.array([[0.9, 0.1], [0.2, 0.8], [0.8, 0.3], [0.1, 0.7]])
    >>> result = named_emotion_agreement(weak * 0.5, weak, np.array([2, 0, 2, 0]),
    ...                                  ("negative", "neutral", "positive"), ("joy", "sadness"))
    >>> result["per_emotion"]["joy"]["pearson_r"], result["valence_auc"]
    (1.0, {'model': 1.0, 'weak_labeller': 1.0})
    """
    per_emotion = {}
    for k, name in enumerate(names):
        model, reference = scores[:, k], weak[:, k]
        r = float(np.corrcoef(model, reference)[0, 1]) if model.std() > 0 and reference.std() > 0 else float("nan")
        per_emotion[name] = {"pearson_r": round(r, 6), "mean_abs_error": float(np.abs(model - reference).mean()),
                             "mean": float(model.mean()), "weak_labeller_mean": float(reference.mean()),
                             "mean_by_label": {label: float(model[labels == i].mean())
                                               for i, label in enumerate(label_names) if (labels == i).any()}}
    positive = [i for i, name in enumerate(names) if name in POSITIVE_EMOTIONS]
    negative = [i for i, name in enumerate(names) if name in NEGATIVE_EMOTIONS]

    def auc(values: np.ndarray) -> float:
        if not positive or not negative or not {"positive", "negative"} <= set(label_names):
            return float("nan")
        valence = values[:, positive].mean(1) - values[:, negative].mean(1)
        is_positive, is_negative = labels == label_names.index("positive"), labels == label_names.index("negative")
        polar = is_positive | is_negative
        if not is_positive.any() or not is_negative.any():
            return float("nan")
        return float(roc_auc_score(is_positive[polar], valence[polar]))

    return {"per_emotion": per_emotion,
            "mean_pearson_r": float(np.nanmean([m["pearson_r"] for m in per_emotion.values()])),
            "valence_auc": {"model": auc(scores), "weak_labeller": auc(weak)}}


def rising_edges(probabilities: np.ndarray, threshold: float) -> list[int]:
    """Steps where a probability crosses ``threshold`` upwards: one detection per excursion."""
    above = probabilities >= threshold
    return [int(t) for t in np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))]


def match_change_points(true: Sequence[int], detected: Sequence[int], margin: int) -> dict:
    """Match each true change point to the first unused detection in [cp, cp + margin]."""
    unused = sorted(detected)
    delays = []
    for cp in sorted(true):
        hit = next((d for d in unused if cp <= d <= cp + margin), None)
        if hit is not None:
            unused.remove(hit)
            delays.append(hit - cp)
    return {"true_positives": len(delays), "false_positives": len(unused),
            "false_negatives": len(true) - len(delays), "delays": delays}


def change_point_metrics(true: Sequence[Sequence[int]], detected: Sequence[Sequence[int]],
                         steps: int, margin: int) -> dict:
    """Precision, recall, F1 within ``margin`` steps, mean delay and false alarms per 1,000 steps,
    pooled over timelines; and ``_timeline_counts`` ([timelines, 3]: true positives, false positives
    and false negatives of each timeline) for :func:`f1_interval`, a working value that reports leave out."""
    matched = [match_change_points(cps, found, margin) for cps, found in zip(true, detected)]
    counts = np.array([[m["true_positives"], m["false_positives"], m["false_negatives"]] for m in matched],
                      dtype=np.int64).reshape(-1, 3)
    delays = [d for m in matched for d in m["delays"]]
    tp, fp, fn = (int(n) for n in counts.sum(0))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "mean_delay_steps": float(np.mean(delays)) if delays else float("nan"),
        "false_alarms_per_1000_steps": 1000.0 * fp / steps if steps else 0.0,
        "true_change_points": tp + fn, "detections": tp + fp, "margin_steps": margin,
        "_timeline_counts": counts,
    }


def f1_interval(counts: np.ndarray, baseline_counts: np.ndarray | None = None, rounds: int = 2000,
                seed: int = 0) -> list[float]:
    """95% bootstrap interval of pooled F1 (``counts``: a :func:`change_point_metrics`'s
    ``_timeline_counts``), or of its
    difference from ``baseline_counts``' F1 on the same timelines: timelines are drawn with
    replacement, the same draws for both (a paired comparison), and the 2.5th and 97.5th
    percentiles of the F1 (difference) over ``rounds`` draws are returned.

    Timelines, not change points, are what is drawn: a detector's errors on one user's timeline
    are not independent of each other.

    >>> detector = np.array([[1, 0, 0], [0, 1, 1], [2, 0, 0], [1, 1, 0]])
    >>> low, high = f1_interval(detector)
    >>> bool(0 <= low <= 2 * 4 / (2 * 4 + 2 + 1) <= high <= 1)
    True
    >>> f1_interval(detector, detector)   # the same detections: no difference in any draw
    [0.0, 0.0]
    """
    draws = bootstrap_counts(len(counts), rounds, seed)

    def f1(sample: np.ndarray) -> np.ndarray:
        tp, fp, fn = (draws @ sample).T
        return np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(rounds), where=2 * tp + fp + fn > 0)

    values = f1(counts) if baseline_counts is None else f1(counts) - f1(baseline_counts)
    return [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]


def score_detections(detect: Callable[[Any], Sequence[int]], values: Sequence[Sized], true: Sequence[Sequence[int]],
                     margin: int) -> dict:
    """:func:`change_point_metrics` of ``detect`` run over each timeline's values."""
    return change_point_metrics(true, [detect(v) for v in values], sum(len(v) for v in values), margin)


def tune_detections(make_detect: Callable[[Any], Callable], grid: Sequence[Any], values: Sequence[Sized],
                    true: Sequence[Sequence[int]], margin: int) -> Any:
    """The setting of ``grid`` whose detections have the best F1 (the first of equals).

    >>> tune_detections(lambda t: lambda v: rising_edges(np.asarray(v), t), [0.2, 0.5, 0.9],
    ...                 [[0.1, 0.6, 0.3, 0.7]], [[1, 3]], margin=0)
    0.5
    """
    return max(grid, key=lambda setting: score_detections(make_detect(setting), values, true, margin)["f1"])
