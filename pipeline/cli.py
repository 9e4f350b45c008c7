"""The ``moodshift`` console script.

Each room registers its own subcommands (``register(subparsers)``); this module builds the one
settings object from the environment and the common flags, and hands it to the chosen command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Callable, Sequence

from moodshift.pipeline.settings import Settings

# Rooms that add subcommands, imported lazily so `moodshift broker` does not load torch.
ROOMS = ("moodshift.pipeline.local.cli", "moodshift.models.cli", "moodshift.connectors.cli",
         "moodshift.pipeline.worker.cli", "moodshift.pipeline.local.demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moodshift", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (MOODSHIFT_BOOTSTRAP_SERVERS)")
    parser.add_argument("--state-dir", help="state folder (MOODSHIFT_STATE_DIR)")
    parser.add_argument("--topic-prefix", help="prefix of every topic name (MOODSHIFT_TOPIC_PREFIX)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="override any setting; repeatable"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for room in ROOMS:
        try:
            module = importlib.import_module(room)
        except ModuleNotFoundError as error:
            if error.name != room:  # a room that exists but cannot import is a real error
                raise
            continue
        module.register(subparsers)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {
        "bootstrap_servers": args.bootstrap_servers,
        "state_dir": args.state_dir,
        "topic_prefix": args.topic_prefix,
    }
    return Settings.load(overrides={**overrides, **parse_set(args.set)})


def parse_set(items: Sequence[str]) -> dict[str, str]:
    """``--set FIELD=VALUE`` arguments as a mapping of field to text."""
    overrides = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects FIELD=VALUE, got {item!r}")
        overrides[name.strip()] = value
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # the Kafka clients log every connection at INFO
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = settings_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
