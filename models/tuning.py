"""After training, on validation data: the lexical classifier's share of stage 1, then the change
classifier over the reported stage 1 (which reads the fused probabilities, so it is fitted second), then
the settings of the change detector a worker runs (which reads both, so it is tuned last). All are
written to the checkpoint by ``moodshift train``."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from moodshift.models.change_classifier import fit_change_classifier
from moodshift.models.datasets.timelines import Timeline, TimelineBuilder
from moodshift.models.detector import TUNING_GRID, DetectorConfig, onsets
from moodshift.models.metrics import classification_metrics, score_detections, tune_detections
from moodshift.models.model import MoodshiftModel
from moodshift.models.outputs import StepOutputs, TimelineOutputs, run_on_posts, run_on_timelines


#: The lexical classifier's shares tried (models/lexical.py).
LEXICAL_SHARES = tuple(np.round(np.arange(0.0, 1.01, 0.1), 1).tolist())


@torch.no_grad()
def tune_lexical_share(model: MoodshiftModel, posts: TimelineBuilder, timelines: Sequence[Timeline],
                       device: torch.device) -> dict[str, Any]:
    """Set the lexical classifier's share (of :data:`LEXICAL_SHARES`) with the best stage-1 macro F1:
    at a user's first step on ``posts`` each taken alone, at later steps on ``timelines`` after their
    first. Returns the shares and each one's macro F1."""
    labels = model.config.labels

    def network_then_lexical(run: Callable[[], np.ndarray]) -> list[np.ndarray]:
        outputs = []
        for share in (0.0, 1.0):  # the network alone, then the lexical classifier alone (where there is text)
            model.lexical.share.fill_(share)
            outputs.append(run())
        return outputs

    first = network_then_lexical(lambda: run_on_posts(model, posts.text_ids, device).stage1)
    later = network_then_lexical(lambda: np.concatenate(
        [probs[1:] for probs in run_on_timelines(model, timelines, device).stage1]))
    truths = (np.array([p.label for p in posts.posts]), np.array([p.label for t in timelines for p in t.posts[1:]]))
    chosen, scores = [], {}
    for name, (network, lexical), truth in zip(("first_step", "later_steps"), (first, later), truths):
        f1 = {share: classification_metrics(truth, network + share * (lexical - network), labels)["macro"]["f1"]
              for share in LEXICAL_SHARES}
        chosen.append(max(f1, key=f1.get))
        scores[name] = {"share": chosen[-1], "validation_macro_f1": f1}
    model.lexical.share.copy_(torch.tensor(chosen))
    return scores


def fit_change_classifier_on(model: MoodshiftModel, timelines: Sequence[Timeline],
                             device: torch.device) -> dict[str, Any]:
    """Fit ``model``'s change classifier (models/change_classifier.py) on ``timelines``' steps and
    their change targets; returns how many steps and changes it saw."""
    targets = [np.array([change for (_, _, change, _) in timeline.targets]) for timeline in timelines]
    fit_change_classifier(model.change_classifier, run_on_timelines(model, timelines, device).change_features, targets)
    return {"timelines": len(timelines), "steps": int(sum(map(len, targets))),
            "change_steps": int(sum(t.sum() for t in targets))}


def worker_onsets(labels: Sequence[str], config: DetectorConfig) -> Callable[[StepOutputs], list[int]]:
    """One timeline's outputs → the onsets of the change points a worker with ``config`` emits."""
    return lambda outputs: onsets(outputs.class_probs, outputs.change_probs, labels, config)


def tune_detector(outputs: TimelineOutputs, timelines: Sequence[Timeline], margin: int,
                  labels: Sequence[str]) -> tuple[DetectorConfig, float]:
    """The worker's detector settings (of :data:`TUNING_GRID`) with the best change-point F1 on
    these timelines, and that F1; the detections are the change points' onsets."""
    values, truth = outputs.per_timeline(), [t.change_points for t in timelines]
    best = tune_detections(lambda config: worker_onsets(labels, config), TUNING_GRID, values, truth, margin)
    return best, score_detections(worker_onsets(labels, best), values, truth, margin)["f1"]


def tune_after_training(model: MoodshiftModel, posts: TimelineBuilder, timelines: Sequence[Timeline],
                        calibration: Sequence[Timeline], margin: int, device: torch.device,
                        log: Callable[[str], None]) -> tuple[dict[str, Any], DetectorConfig]:
    """Tune ``model``'s lexical share (if it has the classifier), fit its change classifier (if it has
    one) on the ``calibration`` timelines, then tune the worker detector on ``timelines``; returns the
    training summary's entries and the detector settings."""
    summary: dict[str, Any] = {}
    if model.lexical is not None:
        summary["lexical_share"] = tune_lexical_share(model, posts, timelines, device)
        log("lexical classifier's share of stage 1, tuned on validation data: "
            + ", ".join(f"{name} {tuned['share']}" for name, tuned in summary["lexical_share"].items()))
    if model.change_classifier is not None:
        summary["change_classifier"] = fit_change_classifier_on(model, calibration, device)
        log(f"change classifier fitted on {len(calibration)} timelines of validation posts")
    detector, summary["detector_validation_f1"] = tune_detector(
        run_on_timelines(model, timelines, device), timelines, margin, model.config.labels)
    log(f"worker detector tuned on {len(timelines)} validation timelines: {detector} "
        f"(change-point F1 {summary['detector_validation_f1']:.3f})")
    return summary, detector
