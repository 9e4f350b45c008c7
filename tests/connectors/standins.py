"""Scripted HTTP servers on 127.0.0.1 that stand in for the internet APIs, and a topic reader."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from kafka import KafkaConsumer, TopicPartition

from moodshift.pipeline.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Reply:
    """One scripted answer; ``delay`` seconds pass before it is sent (timeouts)."""

    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, (dict, list)):
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(self.body).encode(), headers
        return (self.body.encode() if isinstance(self.body, str) else self.body), headers


Streamer = Callable[[BaseHTTPRequestHandler], None]  # writes its own answer (server-sent events)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)  # when it arrived


def trickle(body: bytes, seconds_per_byte: float, content_type: str = "application/json") -> Streamer:
    """A 200 answer whose body is sent one byte at a time, ``seconds_per_byte`` apart: each read is
    quick, the whole body slow."""
    def stream(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for i in range(len(body)):
            handler.wfile.write(body[i:i + 1])
            handler.wfile.flush()
            time.sleep(seconds_per_byte)
    return stream


class StandIn:
    """An HTTP server whose answers per path are scripted: each request takes the next reply, the
    last one repeats. ``seen`` records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply | Streamer]] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                stand_in._handle(self)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, path: str, *replies: Reply | Streamer) -> "StandIn":
        self.routes[path] = list(replies)
        return self

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        with self._lock:
            self.seen.append(Seen(handler.command, parts.path, parse_qs(parts.query), dict(handler.headers)))
            replies = self.routes.get(parts.path)
            reply = (replies.pop(0) if len(replies) > 1 else replies[0]) if replies else Reply(404, "no route")
        try:
            if callable(reply):
                return reply(handler)
            time.sleep(reply.delay)
            body, headers = reply.encoded()
            handler.send_response(reply.status)
            headers.setdefault("Content-Length", str(len(body)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def read_topic(settings: Settings, name: str, count: int, timeout: float = 20.0) -> list[Any]:
    """The first ``count`` records of logical topic ``name`` (fewer if they do not come in time)."""
    consumer = KafkaConsumer(
        settings.topic(name), auto_offset_reset="earliest", consumer_timeout_ms=500,
        **settings.kafka_python_config(),
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            records += list(consumer)[: count - len(records)]
        if len(records) < count:
            # Whether the records are not in the log or were not read (make test once saw none of
            # one market tick that the producer had flushed; 30 runs beside CPU burners did not).
            topic = settings.topic(name)
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            log.warning("%s: %d of %d records in %.0f s; log end offsets %s; assigned %s; positions %s",
                        topic, len(records), count, timeout, consumer.end_offsets(partitions),
                        sorted(consumer.assignment()), {tp: consumer.position(tp) for tp in consumer.assignment()})
    finally:
        consumer.close()
    return records


def dead_letter_reasons(settings: Settings, count: int) -> list[str]:
    from moodshift.connectors.schemas import DeadLetter
    from moodshift.connectors.topics import DEAD_LETTERS

    return [DeadLetter.from_json_bytes(r.value).reason for r in read_topic(settings, DEAD_LETTERS, count)]


# -- Yahoo Finance's chart API, as yfinance reads it ------------------------------------------------

class YahooChart:
    """Answers ``/v8/finance/chart/<symbol>`` with Yahoo's chart JSON; ``failures`` are answered first
    (a status code, ``"garbage"`` for a body that is not JSON, ``"trickle"`` for the chart sent a byte
    every ``trickle_seconds``). ``open_now`` sets the regular session around now; ``daily``/``intraday``
    are (epoch seconds, open, high, low, close, volume) bars."""

    def __init__(self, server: StandIn, symbol: str) -> None:
        self.symbol = symbol
        self.failures: list[int | str] = []
        self.open_now = False
        self.daily: list[tuple] = []
        self.intraday: list[tuple] = []
        self.intervals_asked: list[str] = []
        self.trickle_seconds = 0.1
        server.route("/", Reply(200, "cookie", {"Set-Cookie": "A3=d=stand-in; Path=/"}))
        server.route("/v1/test/getcrumb", Reply(200, "stand-in-crumb", {"Content-Type": "text/plain"}))
        server.route(f"/v8/finance/chart/{symbol}", self._answer)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(handler.path).query)
        interval = query.get("interval", ["1d"])[0]
        self.intervals_asked.append(interval)
        if self.failures and self.failures[0] == "trickle":
            self.failures.pop(0)
            return trickle(json.dumps(self.chart(interval)).encode(), self.trickle_seconds)(handler)
        if self.failures:
            failure = self.failures.pop(0)
            status, body = (200, b"<html>Oops") if failure == "garbage" else (failure, b'{"chart":{"result":null,'
                            b'"error":{"code":"Internal","description":"stand-in failure"}}}')
        else:
            status, body = 200, json.dumps(self.chart(interval)).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def chart(self, interval: str) -> dict:
        now = int(time.time())
        start, end = (now - 3600, now + 3600) if self.open_now else (now - 7200, now - 3600)
        bars = self.intraday if interval != "1d" else self.daily
        period = {"timezone": "EDT", "start": start, "end": end, "gmtoffset": -14400}
        return {"chart": {"error": None, "result": [{
            "meta": {
                "currency": "USD", "symbol": self.symbol, "exchangeName": "SNP", "fullExchangeName": "SNP",
                "instrumentType": "INDEX", "firstTradeDate": -1325583000, "regularMarketTime": now,
                "hasPrePostMarketData": False, "gmtoffset": -14400, "timezone": "EDT",
                "exchangeTimezoneName": "America/New_York", "regularMarketPrice": 5000.0,
                "chartPreviousClose": 4990.0, "priceHint": 2,
                "currentTradingPeriod": {"pre": period, "regular": period, "post": period},
                "dataGranularity": interval, "range": "1d" if interval != "1d" else "5d",
                "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
                **({"tradingPeriods": [[period]]} if interval != "1d" else {}),  # intraday answers carry it
            },
            "timestamp": [b[0] for b in bars],
            "indicators": {"quote": [{"open": [b[1] for b in bars], "high": [b[2] for b in bars],
                                      "low": [b[3] for b in bars], "close": [b[4] for b in bars],
                                      "volume": [b[5] for b in bars]}],
                           **({"adjclose": [{"adjclose": [b[4] for b in bars]}]} if interval == "1d" else {})},
        }]}}
