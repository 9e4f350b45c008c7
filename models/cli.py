"""``moodshift train``, ``moodshift evaluate`` and ``moodshift sweep``: argparse subcommands for the project's CLI.

The project's ``moodshift`` entry point calls :func:`register` on its subparsers and runs
``args.handler(args, settings)``, which returns the process exit code. Without ``--out`` /
``--checkpoint`` the model lives at ``default_checkpoint_path(settings.state_dir)``.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="moodshift")
>>> register(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["train", "--preset", "quick", "--random-backbone"])
>>> args.preset, args.out, args.handler.__name__
('quick', None, 'run_train')
>>> checkpoint_path(None, Path("/tmp/state"))
PosixPath('/tmp/state/models/moodshift.pt')
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

# Nothing here imports torch at module level: every `moodshift` command builds this room's
# parser, and `moodshift broker` or `moodshift ingest` should not wait seconds for torch to load.
from moodshift.models.config import ALL_MODALITIES

DEFAULT_REPORT_DIR = Path("docs/model")
DEFAULT_SWEEP_REPORT = DEFAULT_REPORT_DIR / "sweep.md"


def key_value(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` → ``(NAME, VALUE)``, for argparse's ``type=``.

    >>> key_value("no-context=.state/no-context.pt")
    ('no-context', '.state/no-context.pt')
    """
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"wants NAME=VALUE, got {text!r}")
    return name, value


def checkpoint_path(given: Path | None, state_dir: Path | None) -> Path:
    if given is not None:
        return given
    if state_dir is None:
        raise ValueError("no checkpoint path given and no state folder to default to")
    from moodshift.models.checkpoint import default_checkpoint_path

    return default_checkpoint_path(state_dir)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train``, ``evaluate`` and ``sweep`` subcommands."""
    train = subparsers.add_parser("train", help="train the emotion model on real offline data",
                                  description="Train the multimodal emotion model (see docs/model/).")
    train.add_argument("--preset", choices=("default", "quick"), default="default",
                       help="default: the method's model, < 15 min on 2 CPU cores; quick: < 2 min, for demos")
    train.add_argument("--out", type=Path, help="checkpoint to write (default: STATE_DIR/models/moodshift.pt)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run saved at --out")
    train.add_argument("--seed", type=int, default=0, help="initialisation and training-batch seed")
    train.add_argument("--data-seed", type=int, default=0, help="split and validation/test timeline seed")
    train.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    train.add_argument("--epochs", type=int, help="override the preset's maximum number of epochs")
    train.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this budget")
    train.add_argument("--image-weights", default="DEFAULT",
                       help="torchvision weights name (from its cache) or a local .pth file")
    train.add_argument("--download-weights", action="store_true", help="let torchvision download the weights")
    train.add_argument("--random-backbone", action="store_true",
                       help="use a random image backbone when no weights are available (marked in the checkpoint)")
    train.add_argument("--without", action="append", default=[], choices=("image", "audio", "context", "text"),
                       help="leave a modality out (ablations); may repeat")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=run_train)

    evaluate = subparsers.add_parser("evaluate", help="evaluate a checkpoint against baselines",
                                     description="Write report.json, report.md and PNG plots.")
    evaluate.add_argument("--checkpoint", type=Path, help="default: STATE_DIR/models/moodshift.pt")
    evaluate.add_argument("--out-dir", type=Path,
                          help=f"default: {DEFAULT_REPORT_DIR}; with --posts, report-<file name> here")
    evaluate.add_argument("--ablation", action="append", default=[], metavar="NAME=CHECKPOINT", type=key_value,
                          help="also report a model trained with `train --without ...`; may repeat")
    evaluate.add_argument("--device", default="auto")
    own = evaluate.add_argument_group("your own labelled posts (instead of the project's test split)")
    own.add_argument("--posts", type=Path, metavar="FILE",
                     help="CSV/TSV with a header, or JSON lines: a text and a label per post")
    own.add_argument("--text-field", default="text", help="the text's column or key (default: text)")
    own.add_argument("--label-field", default="label", help="the label's column or key (default: label)")
    own.add_argument("--label-map", action="append", default=[], metavar="RAW=LABEL", type=key_value,
                     help="map a raw label to negative, neutral or positive, e.g. 4=positive; may repeat "
                          "(the labels themselves and neg/neu/pos map without it)")
    evaluate.set_defaults(handler=run_evaluate)
    register_sweep(subparsers)


def register_sweep(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` subcommand: the seed method's hyper-parameter study (models/sweep.py)."""
    sweep = subparsers.add_parser("sweep", help="train one-factor-at-a-time variants of a preset and compare them",
                                  description="Learning rate, layers, hidden size, word-vector dimension, text "
                                              "n-grams, with and without context; writes sweep.md/.json/.png.")
    sweep.add_argument("--preset", default="quick", help="the base preset the trials vary (default: quick)")
    sweep.add_argument("--budget-minutes", type=float, default=25.0,
                       help="start no trial after this many minutes; later trials are listed as not run")
    sweep.add_argument("--epochs", type=int, help="each trial's maximum number of epochs (default: the preset's)")
    sweep.add_argument("--out", type=Path, default=DEFAULT_SWEEP_REPORT,
                       help=f"the Markdown page; .json and .png beside it (default: {DEFAULT_SWEEP_REPORT})")
    sweep.add_argument("--work-dir", type=Path, help="the trials' checkpoints (default: STATE_DIR/sweep)")
    sweep.add_argument("--only", action="append", default=[], metavar="NAME",
                       help="run only this trial (base, base-seed1, learning_rate=0.003, no-context, ...); may repeat")
    sweep.add_argument("--without", action="append", default=[], choices=("image", "audio", "context", "text"),
                       help="leave a modality out of every trial; may repeat")
    sweep.add_argument("--random-backbone", action="store_true",
                       help="use a random image backbone when no weights are available")
    sweep.add_argument("--image-weights", default="DEFAULT", help="torchvision weights name or a local .pth file")
    sweep.add_argument("--device", default="auto")
    sweep.set_defaults(handler=run_sweep)


def run_train(args: argparse.Namespace, settings=None) -> int:
    from moodshift.models.image import BackboneWeightsUnavailable
    from moodshift.models.train import TrainOptions, train

    options = TrainOptions(
        out=checkpoint_path(args.out, getattr(settings, "state_dir", None)), preset=args.preset, seed=args.seed, data_seed=args.data_seed, device=args.device,
        resume=args.resume, image_weights=args.image_weights, random_backbone=args.random_backbone,
        allow_download=args.download_weights,
        modalities=tuple(m for m in ALL_MODALITIES if m not in args.without),
        epochs=args.epochs, max_minutes=args.max_minutes, progress=not args.no_progress,
    )
    try:
        train(options)
    except BackboneWeightsUnavailable as why:
        print(f"moodshift train: {why}\nmoodshift train: pass --image-weights FILE.pth, "
              "--download-weights, or --random-backbone", file=sys.stderr)
        return 2
    except (ModuleNotFoundError, ValueError) as why:
        print(f"moodshift train: {why}", file=sys.stderr)
        return 1
    return 0


def run_evaluate(args: argparse.Namespace, settings=None) -> int:
    from moodshift.models.datasets.labelled_file import load_labelled_posts
    from moodshift.models.evaluate import evaluate, evaluate_posts
    from moodshift.models.image import BackboneWeightsUnavailable

    checkpoint = checkpoint_path(args.checkpoint, getattr(settings, "state_dir", None))
    ablations = {name: Path(path) for name, path in args.ablation}
    if not checkpoint.exists():
        print(f"moodshift evaluate: no checkpoint at {checkpoint}; run `moodshift train` first", file=sys.stderr)
        return 1
    command = shlex.join(["moodshift", *sys.argv[1:]])
    try:
        if args.posts is None:
            evaluate(checkpoint, args.out_dir or DEFAULT_REPORT_DIR, ablations, args.device, command=command)
        else:
            posts = load_labelled_posts(args.posts, text_field=args.text_field, label_field=args.label_field,
                                        label_map=dict(args.label_map))
            out_dir = args.out_dir or Path(f"report-{args.posts.stem}")
            evaluate_posts(checkpoint, posts, out_dir, source=args.posts.name, device=args.device, command=command)
    except (ModuleNotFoundError, ValueError, BackboneWeightsUnavailable, OSError) as why:
        print(f"moodshift evaluate: {why}", file=sys.stderr)
        return 1
    return 0


def run_sweep(args: argparse.Namespace, settings=None) -> int:
    """``moodshift sweep``: run the trials, write the report; the exit code."""
    from moodshift.models import sweep
    from moodshift.models.image import BackboneWeightsUnavailable
    from moodshift.models.sweep_report import write_sweep_report

    state_dir = getattr(settings, "state_dir", None)
    if args.work_dir is None and state_dir is None:
        print("moodshift sweep: pass --work-dir (no state folder to default to)", file=sys.stderr)
        return 1
    options = sweep.SweepOptions(
        work_dir=args.work_dir or Path(state_dir) / "sweep", preset=args.preset, budget_minutes=args.budget_minutes,
        epochs=args.epochs, modalities=tuple(m for m in ALL_MODALITIES if m not in args.without),
        only=tuple(args.only), device=args.device, image_weights=args.image_weights,
        random_backbone=args.random_backbone)
    try:
        report = sweep.run_sweep(options)
    except BackboneWeightsUnavailable as why:
        print(f"moodshift sweep: {why}\nmoodshift sweep: pass --image-weights FILE.pth or --random-backbone",
              file=sys.stderr)
        return 2
    except (ModuleNotFoundError, ValueError) as why:
        print(f"moodshift sweep: {why}", file=sys.stderr)
        return 1
    for path in write_sweep_report(report, args.out, shlex.join(["moodshift", *sys.argv[1:]])):
        print(f"wrote {path}")
    return 0
