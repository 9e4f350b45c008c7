"""Baselines on the same splits: per-post classifiers and change-point detectors on a per-step score.

Classifiers give [N, C] scores: the majority class, VADER (lexicon; its compound score thresholded
at ±0.05, the authors' convention) and TF-IDF + logistic regression fitted on the training posts.
Change-point detectors watch one number per step, a valence score (p(positive) - p(negative) from
TF-IDF + LR, or VADER's compound): river's ADWIN and PageHinkley online, ruptures' PELT offline
(a reference that sees the whole timeline). Their sensitivity is tuned on validation timelines.

>>> majority = MajorityClass().fit(np.array([0, 2, 2]))
>>> majority.scores(["anything", "else"]).argmax(axis=1).tolist()
[2, 2]
>>> online_detections([0.0] * 40 + [1.0] * 40, lambda: drift.PageHinkley(min_instances=5, threshold=2.0))[0] > 40
True
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from river import drift

VALENCE_LABELS = ("negative", "neutral", "positive")


class MajorityClass:
    def fit(self, labels: np.ndarray) -> "MajorityClass":
        self.counts = np.bincount(labels)
        return self

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return np.tile(self.counts / self.counts.sum(), (len(texts), 1))


class Vader:
    """VADER's compound score as negative / neutral / positive scores (needs exactly those labels)."""

    def __init__(self, labels: Sequence[str]) -> None:
        if tuple(labels) != VALENCE_LABELS:
            raise ValueError(f"VADER scores {VALENCE_LABELS}, not {tuple(labels)}")
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyser = SentimentIntensityAnalyzer()

    def valence(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self.analyser.polarity_scores(text)["compound"] for text in texts])

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        compound = self.valence(texts)
        # Rankings for AUC follow the compound score; the argmax applies the ±0.05 thresholds.
        neutral = 0.05 - np.abs(compound)
        return np.column_stack([-compound, neutral, compound])


class TfidfLogisticRegression:
    def fit(self, texts: Sequence[str], labels: np.ndarray, seed: int = 0) -> "TfidfLogisticRegression":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vectoriser = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        self.model = LogisticRegression(C=4.0, max_iter=2000, random_state=seed)
        self.model.fit(self.vectoriser.fit_transform(texts), labels)
        return self

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.predict_proba(self.vectoriser.transform(texts))


def online_detections(values: Sequence[float], make_detector: Callable[[], object]) -> list[int]:
    """Steps at which a river drift detector, fed one value per step, reports a change."""
    detector = make_detector()
    found = []
    for t, value in enumerate(values):
        detector.update(float(value))
        if detector.drift_detected:
            found.append(t)
    return found


def pelt_detections(values: Sequence[float], penalty: float) -> list[int]:
    """Offline PELT (L2 cost) segment starts; sees the whole timeline at once."""
    import ruptures

    signal = np.asarray(values, dtype=float).reshape(-1, 1)
    return [int(b) for b in ruptures.Pelt(model="l2", min_size=2, jump=1).fit(signal).predict(pen=penalty)[:-1]]


#: Detector families and the sensitivities tried on validation timelines.
DETECTORS: dict[str, tuple[Callable[[float], Callable[[Sequence[float]], list[int]]], list[float]]] = {
    "ADWIN": (lambda delta: lambda v: online_detections(v, lambda: drift.ADWIN(delta=delta, clock=1, grace_period=3, min_window_length=2)),
              [0.002, 0.01, 0.05, 0.1, 0.3, 0.6, 0.9]),
    "PageHinkley": (lambda threshold: lambda v: online_detections(v, lambda: drift.PageHinkley(min_instances=3, delta=0.05, threshold=threshold, alpha=0.9)),
                    [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0]),
    "ruptures PELT (offline)": (lambda penalty: lambda v: pelt_detections(v, penalty),
                                [0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]),
}
