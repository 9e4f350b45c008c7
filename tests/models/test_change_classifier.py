"""The change classifier over the reported stage 1: its features and what a fit learns from them."""

from __future__ import annotations

import numpy as np
import torch

from moodshift.models.change_classifier import ChangeClassifier, fit_change_classifier

LABELS, HISTORY = 3, 2


def noisy_timeline(rng: np.random.Generator, length: int = 60) -> tuple[torch.Tensor, np.ndarray]:
    """Reported probabilities [T, labels] of a user whose emotion changes every 5-12 steps, each
    step's probabilities peaked on the regime's label 80% of the time; change targets [T] (1 on a
    regime's first two steps)."""
    probs, targets, regime, left = [], [], int(rng.integers(LABELS)), 0
    for t in range(length):
        new = left == 0
        if new:
            regime = regime if t == 0 else int((regime + rng.integers(1, LABELS)) % LABELS)
            left, fresh = int(rng.integers(5, 13)), 0
        label = regime if rng.random() < 0.8 else int(rng.integers(LABELS))
        probs.append(rng.dirichlet(np.ones(LABELS)) * 0.3 + 0.7 * np.eye(LABELS)[label])
        targets.append(float(t > 0 and fresh < 2))
        left, fresh = left - 1, fresh + 1
    return torch.tensor(np.array(probs), dtype=torch.float32), np.array(targets)


def features_of(classifier: ChangeClassifier, probs: torch.Tensor) -> torch.Tensor:
    """One timeline's features [T, n_features], as the model builds them in its forward."""
    steps = classifier.history
    padded = torch.cat([torch.zeros(steps, LABELS), probs])
    lags = torch.arange(1, steps + 1)
    positions = torch.arange(len(probs))
    history = padded[steps + positions[:, None] - lags]  # [T, history, labels]
    return classifier.features(probs, history, positions[:, None] >= lags, torch.zeros(len(probs)))


def fitted_scores(classifier: ChangeClassifier, train: list, test: list) -> np.ndarray:
    fit_change_classifier(classifier, [features_of(classifier, p) for p, _ in train], [t for _, t in train])
    return np.concatenate([classifier(features_of(classifier, p)).sigmoid().numpy() for p, _ in test])


def auc(scores: np.ndarray, targets: np.ndarray) -> float:
    return float((scores[targets == 1][:, None] > scores[targets == 0][None, :]).mean())


def test_a_fitted_classifier_finds_where_the_reported_emotion_moved() -> None:
    rng = np.random.default_rng(0)
    train, test = [noisy_timeline(rng) for _ in range(150)], [noisy_timeline(rng) for _ in range(50)]
    targets = np.concatenate([t for _, t in test])
    classifier = ChangeClassifier(LABELS, HISTORY)
    with_history = auc(fitted_scores(classifier, train, test), targets)
    assert bool(classifier.fitted) and with_history > 0.75, with_history
    # It ranks a regime's first steps above the rest; the current step alone cannot.
    assert auc(fitted_scores(ChangeClassifier(LABELS, 0), train, test), targets) < with_history - 0.1


def test_an_unfitted_classifier_reports_nothing() -> None:
    classifier = ChangeClassifier(LABELS, HISTORY)
    probs, _ = noisy_timeline(np.random.default_rng(1), length=5)
    assert classifier(features_of(classifier, probs)) is None


def test_whether_it_is_fitted_travels_with_its_weights() -> None:
    """A model loaded from a fitted one's weights reports the classifier's logit; one loaded from an
    unfitted one's stops reporting it."""
    probs, _ = noisy_timeline(np.random.default_rng(2), length=5)
    fitted = ChangeClassifier(LABELS, HISTORY)
    fitted.weight.normal_()
    fitted.mark_fitted()
    loaded = torch.nn.Sequential(ChangeClassifier(LABELS, HISTORY))
    loaded.load_state_dict(torch.nn.Sequential(fitted).state_dict())
    assert torch.equal(loaded[0](features_of(loaded[0], probs)), fitted(features_of(fitted, probs)))
    loaded.load_state_dict(torch.nn.Sequential(ChangeClassifier(LABELS, HISTORY)).state_dict())
    assert loaded[0](features_of(loaded[0], probs)) is None
