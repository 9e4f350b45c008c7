"""Plots and the Markdown report written by ``moodshift evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from moodshift.models.datasets.timelines import Timeline  # noqa: E402


def plot_roc(labels: np.ndarray, probabilities: np.ndarray, names: Sequence[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    for k, name in enumerate(names):
        if not 0 < (labels == k).sum() < len(labels):
            continue  # a class the data lacks (two-class posts) has no curve
        fpr, tpr, _ = roc_curve(labels == k, probabilities[:, k])
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="moodshift stage 1, one-vs-rest ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(confusion: list[list[int]], names: Sequence[str], path: Path) -> None:
    matrix = np.array(confusion)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title="moodshift stage 1 (test timeline steps)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_timeline(timeline: Timeline, stage1: np.ndarray, change: np.ndarray, threshold: float,
                  names: Sequence[str], path: Path) -> None:
    from moodshift.models.metrics import rising_edges

    steps = np.arange(len(timeline.steps))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    top.step(steps, timeline.regime, where="mid", color="black", lw=2, label="regime (truth)")
    top.scatter(steps, [p.label for p in timeline.posts], s=14, color="tab:orange", label="post label")
    top.scatter(steps, stage1.argmax(1) + 0.15, s=14, marker="x", color="tab:blue", label="stage-1 prediction")
    top.set(yticks=range(len(names)), yticklabels=names, title="one test user")
    top.legend(loc="upper right", fontsize=7)
    bottom.plot(steps, change, color="tab:blue", label="change probability")
    bottom.axhline(threshold, ls=":", color="grey", label=f"threshold {threshold:.2f}")
    for i, cp in enumerate(timeline.change_points):
        for ax in (top, bottom):
            ax.axvline(cp - 0.5, color="green", lw=1, label="true change" if ax is bottom and i == 0 else None)
    for i, t in enumerate(rising_edges(change, threshold)):
        bottom.plot(t, change[t], "rv", label="detected change" if i == 0 else None)
    bottom.set(xlabel="step", ylabel="p(change)", ylim=(0, 1))
    bottom.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def _classification_rows(rows: dict[str, dict], key: str) -> list[str]:
    lines = ["| model | accuracy | macro P | macro R | macro F1 | macro AUC | valence AUC |",
             "|---|---|---|---|---|---|---|"]
    for name, result in rows.items():
        m = result[key]
        lines.append(f"| {name} | {_f(m['accuracy'])} | {_f(m['macro']['precision'])} | {_f(m['macro']['recall'])} "
                     f"| {_f(m['macro']['f1'])} | {_f(m['macro']['auc_ovr'])} | {_f(m['macro'].get('valence_auc'))} |")
    return lines


def _change_rows(rows: dict[str, dict]) -> list[str]:
    lines = ["| detector | P | R | F1 | F1, 95% interval | mean delay (steps) | false alarms / 1000 steps | tuned setting |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        setting = _detector_settings(m["settings"]) if "settings" in m else f"{m['tuned_setting']:g}"
        interval = "–".join(_f(v) for v in m["f1_interval_95"]) if "f1_interval_95" in m else ""
        lines.append(f"| {name} | {_f(m['precision'])} | {_f(m['recall'])} | {_f(m['f1'])} | {interval} | "
                     f"{_f(m['mean_delay_steps'], 2)} | {_f(m['false_alarms_per_1000_steps'], 1)} | {setting} |")
    return lines


def _classification_comparison_lines(comparisons: dict[str, Any] | None, unit: str) -> list[str]:
    """moodshift against each baseline classifier, with paired intervals; ``unit``: what was drawn."""
    if not comparisons:
        return []
    lines = [f"moodshift minus each baseline, with 95% intervals from the {unit} drawn with replacement "
             "(1,000 draws, the same for both; an interval that contains 0 cannot tell the two apart):", ""]
    for name, c in comparisons.items():
        parts = [f"{label} {c[key]['difference']:+.3f} ({c[key]['interval_95'][0]:+.3f} to {c[key]['interval_95'][1]:+.3f})"
                 for key, label in (("macro_f1", "macro F1"), ("valence_auc", "valence AUC")) if key in c]
        lines.append(f"- against {name}: " + ", ".join(parts))
    return lines + [""]


def _comparison_lines(comparisons: dict[str, Any] | None) -> list[str]:
    """moodshift's detectors against the best online baseline detector, with paired intervals."""
    if not comparisons:
        return []
    lines = [f"Against the best online baseline detector, {comparisons['baseline']} (F1 "
             f"{_f(comparisons['baseline_f1'])}), on the same timelines drawn with replacement (2,000 draws; "
             "an interval that contains 0 cannot tell the two apart):", ""]
    for name, c in comparisons["detectors"].items():
        low, high = c["interval_95"]
        lines.append(f"- moodshift {name}: F1 {c['f1_difference']:+.3f} (95% interval {low:+.3f} to {high:+.3f})")
    return lines + [""]


def _detector_settings(s: dict[str, Any]) -> str:
    """The worker detector's settings, briefly: ``enter 0.5, margin 0.1, dwell 3 (2 with stage 2 ≥ 0.5)``;
    the stage-2 part only where it shortens the dwell."""
    shortens = s["change_threshold"] <= 1 and s["signal_dwell"] < s["min_dwell"]
    signal = f" ({s['signal_dwell']} with stage 2 ≥ {s['change_threshold']:g})" if shortens else ""
    return f"enter {s['enter_threshold']:g}, margin {s['margin']:g}, dwell {s['min_dwell']}{signal}"


def _state_dtype_lines(result: dict[str, Any] | None) -> list[str]:
    """The served outputs with users' state stored as float32 and as float16 (setting ``state_dtype``)."""
    if not result:
        return []
    diff = result["difference"]
    lines = ["## Users' state stored as float16 — test timelines, streamed step by step", "",
             "Each post is one model step; between steps each user's state is stored as bytes, as the",
             f"worker's records hold it. Change points at the tuned threshold {diff['threshold']:g}.", "",
             "| state | bytes per user | accuracy | macro F1 | change-point F1 | false alarms / 1000 steps |",
             "|---|---|---|---|---|---|"]
    for dtype in ("float32", "float16"):
        m = result[dtype]
        lines.append(f"| {dtype} | {m['state_bytes']} | {_f(m['timeline_steps']['accuracy'])} | "
                     f"{_f(m['timeline_steps']['macro']['f1'])} | {_f(m['change_points']['f1'])} | "
                     f"{_f(m['change_points']['false_alarms_per_1000_steps'], 1)} |")
    lines += ["", f"Per step, float16 against float32: stage-1 probabilities differ by at most "
              f"{diff['stage1_max_abs']:.2e} (mean {diff['stage1_mean_abs']:.2e}), the top emotion agrees on "
              f"{100 * diff['argmax_agreement']:.2f}% of steps, the change probability differs by at most "
              f"{diff['change_prob_max_abs']:.2e}; detected change points are "
              f"{'identical' if diff['change_points_identical'] else 'not identical'}.", ""]
    return lines


def _named_emotion_lines(result: dict[str, Any] | None, labels: Sequence[str]) -> list[str]:
    """The named emotions against the weak labeller they learned from, and against the human labels."""
    if not result:
        return []
    auc = result["valence_auc"]
    lines = ["## Named emotions (Plutchik's eight) — all test posts, each alone", "",
             "**Weakly supervised**: no human labels for these emotions ship offline; the model learned them",
             "from nade's scores (models/datasets/weak_labels.py). Only the polarity labels are human. Agreement",
             "with the weak labeller on held-out posts, and the mean score per human label:", "",
             "| emotion | Pearson r with nade | mean abs. error | mean (nade's mean) | "
             + " | ".join(f"mean on {label}" for label in labels) + " |",
             "|---|---|---|---|" + "---|" * len(labels)]
    for name, m in result["per_emotion"].items():
        means = " | ".join(_f(m["mean_by_label"].get(label, float("nan"))) for label in labels)
        lines.append(f"| {name} | {_f(m['pearson_r'])} | {_f(m['mean_abs_error'])} | "
                     f"{_f(m['mean'])} ({_f(m['weak_labeller_mean'])}) | {means} |")
    lines += ["", f"Mean r {_f(result['mean_pearson_r'])}. Against the human polarity labels, the valence "
              "mean(anticipation, joy, trust) − mean(anger, disgust, fear, sadness) ranks positive above "
              f"negative posts with AUC {_f(auc['model'])} from the model's scores and {_f(auc['weak_labeller'])} "
              "from nade's own.", ""]
    return lines


def markdown(report: dict[str, Any]) -> str:
    model, data = report["model"], report["data"]
    training = model["training"]
    classification = {"moodshift": report["moodshift"],
                      **{f"moodshift without {', '.join(sorted(set(['text', 'image', 'audio', 'time', 'context']) - set(a['modalities'] or [])))} ({name})": a
                         for name, a in report["ablations"].items()},
                      **report["baselines"]["classification"]}
    worker = report["moodshift"].get("worker_detector", {})
    change = {"moodshift stage 2": report["moodshift"]["change_points"],
              **({"moodshift worker detector, checkpoint's settings": worker["checkpoint"]} if "checkpoint" in worker else {}),
              **({"moodshift worker detector, built-in defaults": worker["defaults"]} if "defaults" in worker else {}),
              **{f"moodshift stage 2 ({name})": a["change_points"] for name, a in report["ablations"].items()},
              **report["baselines"]["change_points"]}
    per_class = report["moodshift"]["timeline_steps"]["per_class"]
    comparisons = report.get("classification_comparisons", {})
    lines = [
        "# moodshift model evaluation (generated)",
        "",
        f"Made by `{report['command']}`." if report["command"] else "",
        "",
        f"- model `{model['version']}`, training data hash `{model['training_data_hash'][:16]}…`; "
        f"preset `{training.get('preset')}`, seed {training.get('seed')}, {training.get('epochs_run')} epochs "
        f"({training.get('stopped_by')}), {training.get('train_seconds')} s on `{training.get('device')}`",
        f"- image backbone `{model['image_encoder'].get('backbone', 'none')}`"
        + (" with **random weights** (no pretrained weights offline): the image pathway saw only "
           "features of an untrained network" if model["random_backbone"] else ""),
        *([f"- **test posts from `{data['posts_file']}`** ({data['labels']}): nothing was fitted on them; the "
           "baselines trained on the checkpoint's training split, thresholds were tuned on its validation "
           "timelines"] if data.get("posts_file") else []),
        f"- posts: {data['posts']}; test: {data['test_timelines']} timelines, {data['test_steps']} steps, "
        f"{data['test_change_points']} true change points; margin {report['moodshift']['change_points']['margin_steps']} steps",
        "",
        "## Emotion per step (stage 1) — test timeline steps",
        "",
        "Every model sees the same test posts. moodshift also sees each user's earlier steps;",
        "the baselines classify each post alone.",
        "",
        *_classification_rows(classification, "timeline_steps"),
        "",
        *_classification_comparison_lines(comparisons.get("timeline_steps"), "test timelines (all of a timeline's steps together)"),
        "## Emotion per post, each post alone (no history) — all test posts",
        "",
        *_classification_rows(classification, "isolated_posts"),
        "",
        *_classification_comparison_lines(comparisons.get("isolated_posts"), "posts"),
        "## moodshift per class (test timeline steps)",
        "",
        "| class | precision | recall | F1 | AUC (one-vs-rest) | support |",
        "|---|---|---|---|---|---|",
        *[f"| {name} | {_f(m['precision'])} | {_f(m['recall'])} | {_f(m['f1'])} | {_f(m['auc_ovr'])} | {m['support']} |"
          for name, m in per_class.items()],
        "",
        "![confusion matrix](confusion.png) ![ROC](roc.png)",
        "",
        "## Emotion change points — test timelines",
        "",
        "Thresholds and detector sensitivities were tuned for F1 on validation timelines. The worker",
        "detector rows score the change points a worker emits (hysteresis and dwell over the model's",
        "steps, one step per post), matched at their onset; its settings were tuned by `moodshift train`.",
        "An F1's 95% interval comes from the test timelines drawn with replacement (2,000 draws).",
        "",
        *_change_rows(change),
        "",
        *_comparison_lines(report.get("change_point_comparisons")),
        "![a test user's timeline](timeline.png)",
        "",
        *_named_emotion_lines(report["moodshift"].get("named_emotions"), list(report["moodshift"]["isolated_posts"]["per_class"])),
        *_state_dtype_lines(report.get("state_dtype")),
        f"Evaluation took {report['evaluation_seconds']} s.",
        "",
    ]
    return "\n".join(lines)
