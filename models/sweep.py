"""``moodshift sweep``: the seed method's hyper-parameter study, one factor at a time.

The method explored the learning rate, the model structure, the word-vector dimension and training
with and without external information. A sweep trains the base preset once as it is, once with
another seed (how far two identical configs land apart, the noise every other difference must beat),
then once per other value of each factor (:data:`FACTORS`, plus without the context modality), each
with the project's own :func:`models.train.train`. Trials run in order until the time budget is
spent; the rest are listed as not run. Each trial records what training reports (epochs, the
validation loss and its parts at the best epoch, the worker detector's change-point F1 on the
validation timelines) and the stage-1 macro F1 of its checkpoint on the same validation timelines.

>>> from moodshift.models.config import ModelConfig
>>> [t.name for t in trials_around(ModelConfig(learning_rate=1e-3, num_layers=2, hidden_size=128,
...                                              text_dim=64), ("text", "time", "context"))]
['base', 'base-seed1', 'learning_rate=0.0003', 'learning_rate=0.003', 'no-context', 'hidden_size=64',
 'hidden_size=256', 'text_dim=32', 'text_dim=128', 'text_ngrams=1', 'num_layers=1']
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from moodshift.models.checkpoint import load_checkpoint
from moodshift.models.config import ALL_MODALITIES, ModelConfig
from moodshift.models.metrics import classification_metrics
from moodshift.models.outputs import run_on_timelines
from moodshift.models.train import PRESETS, TrainOptions, prepare_data, train

#: ModelConfig fields the sweep varies and the values it tries, most telling first (the budget may
#: cut the list short). The text extractor's one option is word pairs on or off (``text_ngrams``).
FACTORS: dict[str, tuple[Any, ...]] = {
    "learning_rate": (3e-4, 1e-3, 3e-3),
    "hidden_size": (64, 128, 256),
    "text_dim": (32, 64, 128),
    "text_ngrams": (1, 2),
    "num_layers": (1, 2),
}
#: The factor that is a modality, not a config field: external information (weather and market).
CONTEXT = "context"
#: What the table is sorted by and the best trial is chosen on.
METRIC = "validation_macro_f1"


@dataclass(frozen=True)
class Trial:
    """One training run: the base preset with ``changes`` to its ModelConfig, on ``modalities``."""

    name: str
    factor: str  # "base", a ModelConfig field of FACTORS, or CONTEXT
    value: Any
    modalities: tuple[str, ...]
    changes: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


def trials_around(base: ModelConfig, modalities: Sequence[str]) -> list[Trial]:
    """The base twice (seeds 0 and 1), then each factor's values other than the base's, one at a time.

    Without-context comes after the learning rates: it is the method's claim to check."""
    modalities = tuple(modalities)
    trials = [Trial("base", "base", None, modalities), Trial("base-seed1", "base", None, modalities, seed=1)]
    for name, values in FACTORS.items():
        trials += [Trial(f"{name}={value:g}", name, value, modalities, {name: value})
                   for value in values if value != getattr(base, name)]
        if name == "learning_rate" and CONTEXT in modalities:
            trials.append(Trial("no-context", CONTEXT, "without",
                                tuple(m for m in modalities if m != CONTEXT)))
    return trials


def base_value(base: ModelConfig, modalities: Sequence[str], factor: str) -> Any:
    """The base trial's value of a factor (``"with"``/``"without"`` for the context)."""
    if factor == CONTEXT:
        return "with" if CONTEXT in modalities else "without"
    return getattr(base, factor)


@dataclass(frozen=True)
class SweepOptions:
    """Where and how every trial trains: the shared settings of :class:`models.train.TrainOptions`."""

    work_dir: Path  # the trials' checkpoints
    preset: str = "quick"
    budget_minutes: float = 25.0
    epochs: int | None = None  # per-trial cap; the preset's when None
    modalities: tuple[str, ...] = ALL_MODALITIES
    only: tuple[str, ...] = ()  # trial names; all when empty
    data_seed: int = 0
    device: str = "auto"
    image_weights: str | None = "DEFAULT"
    random_backbone: bool = False


def chosen_trials(options: SweepOptions) -> list[Trial]:
    """The sweep's trials for these options, in running order; unknown ``only`` names are an error."""
    if options.preset not in PRESETS:
        raise ValueError(f"no preset {options.preset!r}; presets: {', '.join(PRESETS)}")
    trials = trials_around(PRESETS[options.preset].config, options.modalities)
    unknown = set(options.only) - {t.name for t in trials}
    if unknown:
        raise ValueError(f"no trial named {', '.join(sorted(unknown))}; trials: {', '.join(t.name for t in trials)}")
    return [t for t in trials if not options.only or t.name in options.only]


def run_sweep(options: SweepOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the chosen trials in order until the budget is spent; the sweep's results as JSON-able values.

    The budget is checked before each trial (the first always runs, so there is a reference) and
    caps each trial's training time, so no trial outlives it by more than an epoch and a validation."""
    trials, started = chosen_trials(options), time.monotonic()
    results = []
    for trial in trials:
        left = options.budget_minutes - (time.monotonic() - started) / 60
        if left <= 0 and results:
            results.append({**describe(trial), "status": "not run: budget spent"})
            log(f"sweep: {trial.name} not run, the {options.budget_minutes:g}-minute budget is spent")
            continue
        log(f"sweep: {trial.name} ({left:.1f} of {options.budget_minutes:g} minutes left)")
        results.append({**describe(trial), "status": "run", **run_trial(trial, options, max(left, 0.01), log)})
    preset = PRESETS[options.preset]
    return {"preset": options.preset, "base_config": preset.config.to_dict(), "modalities": list(options.modalities),
            "epochs_cap": options.epochs or preset.epochs, "validation_timelines": preset.validation_timelines,
            "budget_minutes": options.budget_minutes, "wall_seconds": round(time.monotonic() - started, 1),
            "random_backbone": options.random_backbone, "metric": METRIC, "trials": results,
            "base_values": {name: base_value(preset.config, options.modalities, name) for name in (*FACTORS, CONTEXT)}}


def describe(trial: Trial) -> dict[str, Any]:
    """A trial's name and settings, as JSON-able values."""
    return {"name": trial.name, "factor": trial.factor, "value": trial.value, "changes": trial.changes,
            "modalities": list(trial.modalities), "seed": trial.seed}


def run_trial(trial: Trial, options: SweepOptions, max_minutes: float, log: Callable[[str], None]) -> dict[str, Any]:
    """Train one trial to its checkpoint in the work folder; what training and validation measured."""
    started = time.monotonic()
    train_options = TrainOptions(
        out=options.work_dir / f"{trial.name}.pt", preset=options.preset, seed=trial.seed,
        data_seed=options.data_seed, device=options.device, image_weights=options.image_weights,
        random_backbone=options.random_backbone, modalities=trial.modalities, epochs=options.epochs,
        max_minutes=max_minutes, progress=False, config_changes=trial.changes)
    checkpoint, summary = train(train_options, log=lambda line: log(f"  [{trial.name}] {line}"))
    best = min(summary["history"], key=lambda epoch: epoch["val_loss"])
    return {"epochs_run": summary["epochs_run"], "best_epoch": best["epoch"], "stopped_by": summary["stopped_by"],
            "train_seconds": summary["train_seconds"], "best_val_loss": summary["best_val_loss"],
            "val_stage1_loss": best["val_stage1"], "val_change_loss": best["val_change"],
            "change_point_f1": summary["detector_validation_f1"],
            **validation_scores(checkpoint, train_options),
            "wall_seconds": round(time.monotonic() - started, 1), "checkpoint": str(checkpoint)}


def validation_scores(checkpoint: Path, options: TrainOptions) -> dict[str, Any]:
    """The checkpoint's parameter count and its stage-1 accuracy and macro F1 on every step of the
    validation timelines its training stopped early on (the same timelines: same data seed and count)."""
    model, meta = load_checkpoint(checkpoint, "cpu")
    data = prepare_data(meta.config, data_seed=options.data_seed, modalities=options.modalities,
                        image_weights=options.image_weights, random_backbone=options.random_backbone)
    timelines = data.fixed_timelines("validation", PRESETS[options.preset].validation_timelines)
    outputs = run_on_timelines(model, timelines, "cpu")
    labels = np.array([post.label for timeline in timelines for post in timeline.posts])
    scores = classification_metrics(labels, np.concatenate(outputs.stage1), meta.config.labels)
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "validation_accuracy": scores["accuracy"], "validation_macro_f1": scores["macro"]["f1"]}
