"""What ``moodshift sweep`` writes: ``sweep.md`` (the table and what it says), ``sweep.json`` and
``sweep.png`` (one panel per factor), beside each other.

>>> trials = [{"name": "base", "factor": "base", "status": "run", "validation_macro_f1": 0.70},
...           {"name": "base-seed1", "factor": "base", "status": "run", "validation_macro_f1": 0.69},
...           {"name": "text_dim=32", "factor": "text_dim", "status": "run", "validation_macro_f1": 0.72},
...           {"name": "text_dim=128", "factor": "text_dim", "status": "not run: budget spent"}]
>>> [t["name"] for t in ranked(trials, "validation_macro_f1")]
['text_dim=32', 'base', 'base-seed1']
>>> round(seed_spread(trials, "validation_macro_f1"), 3)
0.01
>>> [round(edge, 3) for edge in noise_band(trials, "validation_macro_f1")]
[0.68, 0.71]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers

import matplotlib.pyplot as plt  # noqa: E402

from moodshift.models.report import _f  # noqa: E402

#: The factors' names in the report, in the order of their panels.
FACTOR_TITLES = {"learning_rate": "learning rate", "num_layers": "LSTM layers", "hidden_size": "hidden size",
                 "text_dim": "word-vector dimension", "text_ngrams": "text extractor: n-grams",
                 "context": "external information"}


def ranked(trials: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The trials that ran, best first by ``metric`` (higher is better)."""
    return sorted((t for t in trials if t["status"] == "run"), key=lambda t: -t[metric])


def seed_spread(trials: Sequence[dict[str, Any]], metric: str) -> float | None:
    """How far the base config's runs with different seeds land apart on ``metric`` (None with fewer than two)."""
    values = [t[metric] for t in trials if t["factor"] == "base" and t["status"] == "run"]
    return max(values) - min(values) if len(values) > 1 else None


def write_sweep_report(report: dict[str, Any], out: Path, command: str = "") -> list[Path]:
    """``out`` (Markdown), and beside it the JSON and the PNG of the same name; their paths."""
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {**report, "command": command}
    paths = [out, out.with_suffix(".json"), out.with_suffix(".png")]
    paths[1].write_text(json.dumps(report, indent=2) + "\n")
    plot_factors(report, paths[2])
    out.write_text(markdown(report, paths[2].name))
    return paths


def factor_points(report: dict[str, Any], factor: str) -> list[tuple[Any, dict[str, Any]]]:
    """``(value, trial)`` of a factor's runs, the base's value with the base (seed 0) trial among them."""
    runs = {t["name"]: t for t in report["trials"] if t["status"] == "run"}
    points = [(t["value"], t) for t in runs.values() if t["factor"] == factor]
    if points and "base" in runs:
        points.append((report["base_values"][factor], runs["base"]))
    return sorted(points, key=lambda point: str(point[0]) if isinstance(point[0], str) else point[0])


def _label(value: Any) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def plot_factors(report: dict[str, Any], path: Path) -> None:
    """Per factor: validation macro F1 and change-point F1 at each value tried (* marks the base's value);
    the shaded band is :func:`noise_band`, the base runs' macro F1 give or take how far they land apart."""
    factors = [f for f in FACTOR_TITLES if factor_points(report, f)]
    fig, axes = plt.subplots(1, max(len(factors), 1), figsize=(3.2 * max(len(factors), 1), 3.8), squeeze=False,
                             sharey=True)
    metrics = {"validation_macro_f1": "macro F1", "change_point_f1": "change-point F1"}
    scores = [t[key] for t in report["trials"] if t["status"] == "run" for key in metrics]
    band = noise_band(report["trials"], report["metric"])
    for ax, factor in zip(axes[0], factors):
        points = factor_points(report, factor)
        for offset, (key, name) in zip((-0.2, 0.2), metrics.items()):
            bars = ax.bar([x + offset for x in range(len(points))], [t[key] for _, t in points], width=0.4,
                          label=name, color="tab:blue" if offset < 0 else "tab:orange")
            ax.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
        if band is not None:
            ax.axhspan(*band, color="tab:blue", alpha=0.15, label="base runs' macro F1 ± their spread")
        ax.set_xticks(list(range(len(points))),
                      [_label(v) + ("*" if v == report["base_values"][factor] else "") for v, _ in points])
        ax.set_title(FACTOR_TITLES[factor], fontsize=9)
    if scores:
        axes[0][0].set_ylim(max(0.0, min(scores) - 0.08), min(1.0, max(scores) + 0.06))
        axes[0][0].set_ylabel("validation score (axis does not start at 0)")
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncol=3, fontsize=7)
    fig.suptitle(f"moodshift sweep around the {report['preset']} preset (* = base value)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _row(trial: dict[str, Any]) -> str:
    return (f"| {trial['name']} | {_f(trial['validation_macro_f1'])} | {_f(trial['validation_accuracy'])} "
            f"| {_f(trial['change_point_f1'])} | {_f(trial['best_val_loss'])} | {trial['epochs_run']} "
            f"({trial['best_epoch']}) | {trial['stopped_by']} | {trial['train_seconds']} | {trial['parameters']:,} |")


def noise_band(trials: Sequence[dict[str, Any]], metric: str) -> tuple[float, float] | None:
    """The base runs' range of ``metric`` widened by their spread on each side: a trial outside it differs
    from the base by more than two seeds of the base differ from each other (None without two base runs)."""
    spread = seed_spread(trials, metric)
    if spread is None:
        return None
    values = [t[metric] for t in trials if t["factor"] == "base" and t["status"] == "run"]
    return min(values) - spread, max(values) + spread


def _scores(trial: dict[str, Any]) -> str:
    return (f"{trial['name']} (macro F1 {_f(trial['validation_macro_f1'], 4)}, "
            f"change-point F1 {_f(trial['change_point_f1'])})")


def verdict(report: dict[str, Any]) -> list[str]:
    """What the sweep says about its base preset: the best trial, the seed noise, the trials outside it,
    the trials the epoch cap stopped while they still improved."""
    metric, trials, preset = report["metric"], report["trials"], report["preset"]
    order, band = ranked(trials, metric), noise_band(trials, metric)
    if not any(t["name"] == "base" for t in order):
        return ["- No base trial ran, so nothing is compared."]
    lines = [f"- Best by validation macro F1: {_scores(order[0])}."]
    capped = [t for t in order if t["stopped_by"] == "epochs" and t["best_epoch"] == t["epochs_run"]]
    if capped:
        lines.append(f"- Still improving when the {report['epochs_cap']}-epoch cap stopped them: "
                     f"{', '.join(t['name'] for t in capped)}; their scores say how far they got, not where they end.")
    if band is None:
        return [*lines, "- Seed noise not measured (base-seed1 did not run), so no difference here is told apart "
                        f"from chance and the sweep recommends nothing about the `{preset}` preset."]
    ahead = [t for t in order if t[metric] > band[1]]
    setting = [t for t in ahead if t["changes"]]
    spread = seed_spread(trials, metric)
    lines += [f"- Seed noise: the base with seeds 0 and 1 differs by {_f(spread, 4)} in macro F1, "
              f"so only scores outside {_f(band[0], 4)}–{_f(band[1], 4)} (both base runs, widened by that) count as a "
              "difference; two seeds underestimate the noise and every other trial ran with one seed.",
              f"- Behind both base runs: {', '.join(_scores(t) for t in order if t[metric] < band[0]) or 'none'}.",
              f"- Ahead of both base runs: {', '.join(_scores(t) for t in ahead) or 'none'}."]
    if any(not t["changes"] for t in ahead):
        lines.append("- Leaving out a modality is not a preset setting (`moodshift train --without ...`).")
    if setting:
        return [*lines, f"- **The sweep suggests changing the `{preset}` preset: "
                        f"{', '.join(t['name'] for t in setting)}**; confirm with more seeds before changing it."]
    return [*lines, f"- No preset setting beats both base runs: the sweep gives no reason to change the `{preset}` "
                    "preset."]


def markdown(report: dict[str, Any], plot_name: str) -> str:
    """The sweep's Markdown page."""
    trials, metric = report["trials"], report["metric"]
    skipped = [t["name"] for t in trials if t["status"] != "run"]
    config = report["base_config"]
    return "\n".join([
        "# moodshift hyper-parameter sweep (generated)", "",
        f"Made by `{report['command']}`." if report["command"] else "", "",
        f"- Base: preset `{report['preset']}` (learning rate {config['learning_rate']:g}, {config['num_layers']} "
        f"LSTM layers, hidden {config['hidden_size']}, word vectors {config['text_dim']}, n-grams up to "
        f"{config['text_ngrams']}), modalities {', '.join(report['modalities'])}"
        + (", image backbone with random weights." if report["random_backbone"] else "."),
        f"- Each trial changes one thing and trains with the project's `moodshift train` code: at most "
        f"{report['epochs_cap']} epoch(s), early stopping on the validation loss; the preset's own time cap is "
        "replaced by what is left of the sweep's budget. Seed 0 (base-seed1: seed 1), data seed 0.",
        f"- Scores are on the {report['validation_timelines']} fixed validation timelines (validation posts "
        "only; the test split is not touched): stage-1 macro F1 and accuracy over every step, and the "
        "change-point F1 (±3 steps) of the worker detector as `moodshift train` tunes it on those timelines.",
        f"- Budget {report['budget_minutes']:g} minutes: {len(trials) - len(skipped)} of {len(trials)} trials ran in "
        f"{report['wall_seconds'] / 60:.1f} minutes. Not run (budget spent): {', '.join(skipped) or 'none'}.", "",
        "## Trials, best validation macro F1 first", "",
        "| trial | macro F1 | accuracy | change-point F1 | val loss | epochs (best) | stopped by | train s "
        "| parameters |",
        "|---|---|---|---|---|---|---|---|---|",
        *[_row(t) for t in ranked(trials, metric)],
        *[f"| {name} | not run: budget spent | | | | | | | |" for name in skipped], "",
        "## What it says", "",
        *verdict(report), "",
        f"![validation scores per factor]({plot_name})", "",
    ])
