"""``moodshift ingest posts|videos|http|weather|market|mastodon``: the connectors from the shell.

Replays show a progress bar and exit 0 when every item was delivered to Kafka (accepted or
dead-lettered), 2 when Kafka did not acknowledge some records. Live sources log a status line every
``--status-every`` seconds and serve Prometheus metrics with ``--metrics-port``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from moodshift.connectors import metrics
from moodshift.connectors.producer import DeliveryFailed, EventProducer
from moodshift.connectors.topics import CONNECTOR_TOPICS, ensure_topics
from moodshift.connectors.settings import ConnectorSettings

log = logging.getLogger("connectors")

EXIT_DELIVERY_FAILED = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    ingest = subparsers.add_parser("ingest", help="bring posts, videos, weather and market data into Kafka")
    sources = ingest.add_subparsers(dest="source", required=True)

    for name, kind in (("posts", "post"), ("videos", "video")):
        replay_parser = sources.add_parser(name, help=f"replay JSONL/CSV files or folders of {name}")
        replay_parser.add_argument("paths", nargs="+", type=Path,
                                   help="files (.jsonl, .ndjson, .csv" + (", video files" if kind == "video" else "")
                                        + ") or folders")
        replay_parser.add_argument("--speed", type=float, default=None,
                                   help="real-time × SPEED by event time (default: as fast as possible)")
        replay_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        if kind == "video":
            replay_parser.add_argument("--user-id", help="the user of video files given directly (.mp4, .webm, ...)")
        replay_parser.set_defaults(handler=run_replay, kind=kind)

    http = sources.add_parser("http", help="serve POST /v1/events (ingest_http_host/port/token settings)")
    _live_options(http)
    http.set_defaults(handler=run_http)

    for name, help_text in (("weather", "poll Open-Meteo for weather_locations every weather_interval_seconds"),
                            ("market", "poll Yahoo Finance (yfinance) for market_symbols every market_interval_seconds")):
        polling = sources.add_parser(name, help=help_text)
        _live_options(polling)
        polling.add_argument("--once", action="store_true", help="one successful poll, then exit")
        polling.add_argument("--max-failures", type=int, default=None,
                             help="exit 1 after this many failed polls in a row (default: keep retrying)")
        polling.set_defaults(handler=run_polling_source)

    mastodon = sources.add_parser("mastodon", help="stream statuses from mastodon_url (mastodon_stream, mastodon_token)")
    _live_options(mastodon)
    mastodon.add_argument("--max-statuses", type=int, default=None, help="exit after this many statuses")
    mastodon.set_defaults(handler=run_mastodon)


def _live_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port")
    parser.add_argument("--status-every", type=float, default=30.0, help="seconds between status lines")


def _producer(settings: ConnectorSettings, source: str) -> EventProducer:
    from moodshift.connectors.kafka_access import KafkaAccessError, check_kafka_access

    try:
        check_kafka_access(settings)  # fail fast: kafka-python would retry a rejected login for 30 s
    except KafkaAccessError as error:
        print(f"moodshift {source}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    ensure_topics(settings, CONNECTOR_TOPICS)
    return EventProducer(settings, source)


def run_replay(args: argparse.Namespace, settings: ConnectorSettings) -> int:
    from moodshift.connectors.ingest import Ingestor
    from moodshift.connectors.replay import replay

    producer = _producer(settings, "replay")
    ingestor = Ingestor(settings, producer, source="replay", allow_local_paths=True)
    started = time.monotonic()
    try:
        report = replay(args.paths, ingestor, default_kind=args.kind, speed=args.speed,
                        progress=not args.no_progress, video_user_id=getattr(args, "user_id", None))
    except (FileNotFoundError, ValueError) as error:
        log.error("%s", error)
        return 1
    except DeliveryFailed as error:
        log.error("replay incomplete: %s", error)
        return EXIT_DELIVERY_FAILED
    finally:
        producer.client.close()
    elapsed = time.monotonic() - started
    total = report.accepted + report.rejected
    print(f"replayed {total} items in {elapsed:.1f}s ({total / max(elapsed, 1e-9):.0f}/s): "
          f"{report.accepted} accepted, {report.rejected} dead-lettered {report.by_reason or ''}".rstrip())
    return 0


def run_http(args: argparse.Namespace, settings: ConnectorSettings) -> int:
    from moodshift.connectors.http_ingest import IngestServer
    from moodshift.connectors.ingest import Ingestor

    producer = _producer(settings, "http")
    server = IngestServer(settings, Ingestor(settings, producer, source="http"))
    server.start()
    log.info("ingesting on %s/v1/events", server.url)

    def serve_until_stopped(stop: threading.Event) -> int:
        stop.wait()
        return 0

    return _run_live("http", args, settings, serve_until_stopped, on_exit=[server.stop, producer.close])


def run_polling_source(args: argparse.Namespace, settings: ConnectorSettings) -> int:
    from moodshift.connectors.live import run_polling

    producer = _producer(settings, args.source)
    if args.source == "weather":
        from moodshift.connectors.weather import OpenMeteoSource

        source, interval = OpenMeteoSource(settings, producer), settings.weather_interval_seconds
    else:
        from moodshift.connectors.market import YahooMarketSource

        source, interval = YahooMarketSource(settings, producer), settings.market_interval_seconds
    polls = 1 if args.once else None
    return _run_live(args.source, args, settings, lambda stop: run_polling(
        source, settings, interval, stop, polls=polls, max_failures=args.max_failures), on_exit=[producer.close])


def run_mastodon(args: argparse.Namespace, settings: ConnectorSettings) -> int:
    from moodshift.connectors.ingest import Ingestor
    from moodshift.connectors.mastodon import MastodonStream

    producer = _producer(settings, "mastodon")
    stream = MastodonStream(settings, Ingestor(settings, producer, source="mastodon"))
    return _run_live("mastodon", args, settings, lambda stop: stream.run(stop, args.max_statuses),
                     on_exit=[producer.close])


def _run_live(
    source: str, args: argparse.Namespace, settings: ConnectorSettings, body: Callable[[threading.Event], int | None],
    on_exit: Sequence[Callable[[], None]] = (),
) -> int:
    """Run ``body(stop)`` until it returns or SIGINT/SIGTERM, with metrics, status lines, clean exit."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    if args.metrics_port is not None:
        metrics.serve(args.metrics_port)
    threading.Thread(target=_status_lines, args=(source, args.status_every, stop), daemon=True).start()
    result: int | None = 1
    try:
        result = body(stop)
    finally:
        stop.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for step in on_exit:
            try:
                step()
            except DeliveryFailed as error:
                log.error("%s: %s", source, error)
                result = EXIT_DELIVERY_FAILED
    return result or 0


def _status_lines(source: str, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        log.info("%s: %s", source, status_line())


def status_line() -> str:
    """Totals from the metrics: sent by topic, dead letters, retries, fetch errors."""
    totals: dict[str, float] = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                label = sample.labels.get("topic") or sample.labels.get("reason") or sample.labels.get("source", "")
                name = sample.name.removeprefix("moodshift_connector_").removesuffix("_total")
                key = f"{name}[{label}]" if name == "records_sent" else name
                totals[key] = totals.get(key, 0) + sample.value
    return " ".join(f"{k}={v:.0f}" for k, v in sorted(totals.items())) or "nothing yet"
