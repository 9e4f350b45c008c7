"""``moodshift worker`` and ``moodshift topics``: run the stream worker, create its topics."""

from __future__ import annotations

import argparse
import sys

from moodshift.pipeline.settings import Settings


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
    from moodshift.pipeline.worker.process import limit_torch_threads, tune_garbage_collector
    from moodshift.pipeline.worker.runtime import WorkerRuntime

    limit_torch_threads(settings.torch_threads)
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
