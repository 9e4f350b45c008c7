"""``moodshift worker`` and ``moodshift topics``: run the stream worker, create its topics."""

from __future__ import annotations

import argparse
import gc
import sys

from moodshift.pipeline.settings import Settings

#: Python's garbage collector thresholds for a worker (Python's defaults: 700, 10, 10). A worker
#: keeps every changed user's record and every event since the last checkpoint alive for seconds:
#: with the defaults they survive into the oldest generation, and full collections over that heap
#: took 23 of a busy worker's 69 CPU seconds (a 100,000-post drain, docs/benchmarks.md, "The
#: garbage collector"). Rarer young collections let most of them die first; cycles are still
#: collected, later.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """Set :data:`GC_THRESHOLDS` for this process (the worker; the benchmarks' bare loop likewise).

    >>> previous = gc.get_threshold()
    >>> tune_garbage_collector(); gc.get_threshold()
    (50000, 20, 100)
    >>> gc.set_threshold(*previous)
    """
    gc.set_threshold(*GC_THRESHOLDS)


def register(subparsers: argparse._SubParsersAction) -> None:
    worker = subparsers.add_parser("worker", help="run a stream worker (faust): posts/videos → emotion changes")
    worker.add_argument("--loglevel", default="info")
    worker.set_defaults(handler=run_worker)
    topics = subparsers.add_parser("topics", help="create moodshift's topics (idempotent)")
    topics.set_defaults(handler=create_topics)


def create_topics(args: argparse.Namespace, settings: Settings) -> int:
    from moodshift.connectors.topics import ALL_TOPICS, ensure_topics

    for name in ensure_topics(settings, ALL_TOPICS):
        print(name)
    return 0


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    from moodshift.connectors.kafka_access import KafkaAccessError, check_kafka_access

    try:
        # Fail fast: wrong credentials, untrusted CA (faust would retry). Checked before importing
        # torch and the model, which alone take 10-25 s on a slow 2-core machine.
        check_kafka_access(settings)
    except KafkaAccessError as error:
        print(f"moodshift worker: {error}", file=sys.stderr)
        return 2

    import faust

    from moodshift.connectors.topics import ALL_TOPICS, ensure_topics
    from moodshift.pipeline.worker.app import build_app
    from moodshift.pipeline.worker.runtime import WorkerRuntime

    try:
        runtime = WorkerRuntime.from_settings(settings)  # fail fast: no checkpoint, wrong backbone, ...
    except (FileNotFoundError, ValueError) as error:
        print(f"moodshift worker: {error}", file=sys.stderr)
        return 2
    ensure_topics(settings, ALL_TOPICS)
    tune_garbage_collector()
    app = build_app(settings, runtime)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()  # returns via SystemExit when the worker stops
    return 0
