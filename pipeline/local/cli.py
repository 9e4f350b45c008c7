"""``moodshift broker start|stop|status``: the local Kafka broker for development and tests;
``moodshift kafka TOOL ...``: Kafka's own command-line tools (:mod:`pipeline.local.kafka_tools`)."""

from __future__ import annotations

import argparse
import sys

from moodshift.pipeline.local.kafka_tools import TOOLS, run_tool
from moodshift.pipeline.local.broker import BrokerError, LocalBroker
from moodshift.pipeline.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("broker", help="run a local Apache Kafka broker (KRaft) on 127.0.0.1")
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.set_defaults(handler=run)
    tools = subparsers.add_parser(
        "kafka", help="run one of Kafka's own tools against the configured cluster",
        description="Apache Kafka's command-line tools (kafka-tools, resolved with the broker), with "
                    "--bootstrap-server and the security settings filled in. Example: "
                    "moodshift kafka consumer-groups --describe --all-groups")
    tools.add_argument("tool", choices=sorted(TOOLS))
    tools.add_argument("args", nargs=argparse.REMAINDER, help="the tool's own arguments")
    tools.set_defaults(handler=run_kafka_tool)


def run_kafka_tool(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return run_tool(args.tool, args.args, settings)
    except (BrokerError, ValueError) as error:
        print(f"moodshift kafka {args.tool}: {error}", file=sys.stderr)
        return 2


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
