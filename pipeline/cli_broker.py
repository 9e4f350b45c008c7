"""``moodshift broker start|stop|status``: the local Kafka broker for development and tests."""

from __future__ import annotations

import argparse
import sys

from pipeline.local_broker import BrokerError, LocalBroker
from pipeline.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("broker", help="run a local Apache Kafka broker (KRaft) on 127.0.0.1")
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    broker = LocalBroker(settings)
    try:
        if args.action == "start":
            print(broker.start())
            print_sasl_ssl_listener(broker)
        elif args.action == "stop":
            print("stopped" if broker.stop() else "not running")
        else:
            pid = broker.running_pid()
            print(f"running pid={pid} bootstrap={broker.bootstrap}" if pid else "not running")
            if pid:
                print_sasl_ssl_listener(broker)
            return 0 if pid else 3  # like `systemctl status`: 3 = not running
    except BrokerError as error:
        print(f"moodshift broker {args.action}: {error}", file=sys.stderr)
        return 1
    return 0


def print_sasl_ssl_listener(broker: LocalBroker) -> None:
    """A second line when the SASL_SSL listener is on: its address and the CA file clients trust."""
    if broker.sasl_ssl_bootstrap:
        print(f"sasl_ssl={broker.sasl_ssl_bootstrap} ssl_cafile={broker.tls.ca_file} "
              f"sasl_username={broker.settings.sasl_username}")
