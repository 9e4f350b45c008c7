"""Weather, market and Mastodon against stand-ins of their APIs on 127.0.0.1 and the real broker."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from moodshift.connectors import metrics
from moodshift.connectors.ingest import Ingestor
from moodshift.connectors.live import run_polling
from moodshift.connectors.market import YahooMarketSource
from moodshift.connectors.mastodon import MastodonStream
from moodshift.connectors.producer import EventProducer
from moodshift.connectors.record import Reason
from moodshift.connectors.schemas import DeadLetter, MarketTick, Post, VideoClip, WeatherObservation
from moodshift.connectors.topics import DEAD_LETTERS, MARKET, POSTS, VIDEOS, WEATHER
from moodshift.connectors.weather import OpenMeteoSource
from moodshift.pipeline import cli
from moodshift.pipeline.settings import Settings

from .standins import Reply, StandIn, YahooChart, read_topic
from .test_ingest import BUNNY, cli_args, png_bytes

pytestmark = [pytest.mark.kafka,
              pytest.mark.filterwarnings("ignore:The inplace keyword"),  # inside yfinance
              pytest.mark.filterwarnings("ignore::FutureWarning")]


# -- Open-Meteo ------------------------------------------------------------------------------------

def open_meteo_body(now: datetime, temperature: float) -> dict:
    """Open-Meteo's documented answer for current + hourly in UTC (past_hours=3, forecast_hours=1)."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    hours = [hour - timedelta(hours=h) for h in (3, 2, 1, 0)] + [hour + timedelta(hours=1)]
    variables = ["temperature_2m", "relative_humidity_2m", "precipitation", "wind_speed_10m", "weather_code"]
    return {
        "latitude": 52.52, "longitude": 13.419998, "generationtime_ms": 0.1, "utc_offset_seconds": 0,
        "timezone": "GMT", "timezone_abbreviation": "GMT", "elevation": 38.0,
        "current_units": {"time": "iso8601", "interval": "seconds", "temperature_2m": "°C"},
        "current": {"time": now.strftime("%Y-%m-%dT%H:%M"), "interval": 900, "temperature_2m": temperature,
                    "relative_humidity_2m": 71, "precipitation": 0.0, "wind_speed_10m": 11.2, "weather_code": 3},
        "hourly_units": {"time": "iso8601", "temperature_2m": "°C"},
        "hourly": {"time": [h.strftime("%Y-%m-%dT%H:%M") for h in hours],
                   **{v: ([12.5, 13.0, 13.5, 14.0, 15.0] if v == "temperature_2m" else [1, 2, 3, 4, 5]) for v in variables}},
    }


def test_weather_polls_send_new_observations_once_and_back_off_on_failures(
    connector_settings: Settings, stand_in: StandIn,
) -> None:
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    stand_in.route("/v1/forecast",
                   Reply(body=open_meteo_body(now, 14.2)),
                   Reply(429, "slow down", {"Retry-After": "0"}),
                   Reply(503, "maintenance"),
                   Reply(200, "{not json"),
                   Reply(200, {"current": {"time": "noon", "temperature_2m": 1}}),
                   Reply(body=open_meteo_body(now, 14.2), delay=3.0),  # times out (fetch_timeout 2 s)
                   Reply(body=open_meteo_body(now, 14.2)),  # unchanged: nothing new to send
                   Reply(body=open_meteo_body(now, 16.0)))  # the current temperature changed
    settings = connector_settings.replace(open_meteo_url=stand_in.url, weather_locations="berlin:52.52:13.41")
    errors_before = metrics.FETCH_ERRORS.labels(reason="rate_limited")._value.get()
    with EventProducer(settings, source="open-meteo") as producer:
        source = OpenMeteoSource(settings, producer)
        assert run_polling(source, settings, 0.0, threading.Event(), polls=3) == 0

    assert len(stand_in.requests_to("/v1/forecast")) == 8
    query = stand_in.requests_to("/v1/forecast")[0].query
    assert query["latitude"] == ["52.52"] and query["timezone"] == ["UTC"] and "weather_code" in query["current"][0]
    assert metrics.FETCH_ERRORS.labels(reason="rate_limited")._value.get() == errors_before + 1
    records = read_topic(settings, WEATHER, 6)
    observations = [WeatherObservation.from_json_bytes(r.value) for r in records]
    assert {r.key for r in records} == {b"berlin"}
    # First poll: current + 4 past hours (the next hour is a forecast); then only the changed current.
    assert [(o.kind, o.temperature_c) for o in observations] == [
        ("current", 14.2), ("hourly", 12.5), ("hourly", 13.0), ("hourly", 13.5), ("hourly", 14.0), ("current", 16.0)]
    assert observations[0].observed_time == now and observations[0].relative_humidity_pct == 71.0
    letters = [DeadLetter.from_json_bytes(r.value) for r in read_topic(settings, DEAD_LETTERS, 2)]
    assert sorted(l.reason for l in letters) == ["bad_timestamp", "malformed_json"]
    assert {l.source for l in letters} == {"open-meteo"} and b"{not json" in {l.original for l in letters}


def test_weather_from_the_cli_once(connector_settings: Settings, stand_in: StandIn) -> None:
    stand_in.route("/v1/forecast", Reply(body=open_meteo_body(datetime.now(timezone.utc), 9.0)))
    args = cli_args(connector_settings) + ["--set", f"open_meteo_url={stand_in.url}",
                                           "--set", "weather_locations=oslo:59.91:10.75,lima:-12.05:-77.04"]
    assert cli.main(args + ["ingest", "weather", "--once", "--max-failures", "3"]) == 0
    keys = {r.key for r in read_topic(connector_settings, WEATHER, 10)}
    assert keys == {b"oslo", b"lima"}


# -- Yahoo Finance through yfinance -----------------------------------------------------------------

def test_market_sends_daily_bars_when_closed_then_intraday_when_open_and_survives_errors(
    connector_settings: Settings, stand_in: StandIn,
) -> None:
    chart = YahooChart(stand_in, "MSHIFT")
    minute = int(time.time()) // 60 * 60
    chart.daily = [(minute - 2 * 86400, 10.0, 12.0, 9.0, 11.0, 1000), (minute - 86400, 11.0, 13.0, 10.0, 12.0, 2000)]
    chart.intraday = [(minute - 120, 12.0, 12.5, 11.5, 12.2, 50), (minute - 60, 12.2, 12.4, 12.0, 12.1, 40)]
    settings = connector_settings.replace(yahoo_url=stand_in.url, market_symbols="MSHIFT")
    stop = threading.Event()
    with EventProducer(settings, source="yahoo") as producer:
        source = YahooMarketSource(settings, producer)
        assert run_polling(source, settings, 0.0, stop, polls=1) == 0  # closed: daily bars
        chart.open_now = True
        chart.failures = [429, 429, 500, 500, "garbage"]
        assert run_polling(source, settings, 0.0, stop, polls=2) == 0
    records = read_topic(settings, MARKET, 4)
    ticks = [MarketTick.from_json_bytes(r.value) for r in records]
    assert {r.key for r in records} == {b"MSHIFT"}
    assert [(t.interval, t.close, t.volume) for t in ticks] == [
        ("1d", 11.0, 1000), ("1d", 12.0, 2000), ("1m", 12.2, 50), ("1m", 12.1, 40)]
    assert ticks[2].observed_time == datetime.fromtimestamp(minute - 120, timezone.utc)
    assert read_topic(settings, MARKET, 5, timeout=2) == records  # the unchanged third poll sent nothing
    assert chart.intervals_asked.count("1m") >= 2


def test_market_gives_up_after_the_allowed_failures(connector_settings: Settings, stand_in: StandIn) -> None:
    chart = YahooChart(stand_in, "DOWN")
    chart.failures = [503] * 100
    args = cli_args(connector_settings) + ["--set", f"yahoo_url={stand_in.url}", "--set", "market_symbols=DOWN",
                                           "--set", "backoff_initial_seconds=0.01", "--set", "backoff_max_seconds=0.02"]
    assert cli.main(args + ["ingest", "market", "--once", "--max-failures", "2"]) == 1


# -- Mastodon streaming -----------------------------------------------------------------------------

def status(status_id: str, html: str, *, acct: str = "alice", attachments: list | None = None, **extra) -> dict:
    return {"id": status_id, "created_at": "2024-05-01T12:00:00.000Z", "content": html, "language": "en",
            "spoiler_text": "", "visibility": "public", "uri": f"https://example.social/users/{acct}/statuses/{status_id}",
            "account": {"id": "1", "username": acct.split("@")[0], "acct": acct, "display_name": acct},
            "media_attachments": attachments or [], **extra}


def sse_stream(events: list[tuple[str, str]], then_close: bool = True):
    """A streaming answer: heartbeats, the events, then the connection closes."""
    def stream(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def chunk(text: str) -> None:
            data = text.encode()
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            handler.wfile.flush()

        chunk(":)\n")
        for event, data in events:
            chunk(":thump\n")
            chunk(f"event: {event}\ndata: {data}\n\n")
        handler.wfile.write(b"0\r\n\r\n")
    return stream


def test_mastodon_stream_maps_statuses_reconnects_and_dead_letters(
    connector_settings: Settings, stand_in: StandIn,
) -> None:
    stand_in.route("/media/cat.png", Reply(body=png_bytes(), headers={"Content-Type": "image/png"}))
    stand_in.route("/media/clip.mp4", Reply(body=BUNNY.read_bytes(), headers={"Content-Type": "video/mp4"}))
    first = status("101", "<p>So <b>happy</b> today &amp; sunny</p>", attachments=[
        {"id": "9", "type": "image", "url": stand_in.url + "/media/cat.png", "preview_url": None}])
    second = status("102", "<p>meh</p>", acct="bob@other.host", attachments=[
        {"id": "10", "type": "video", "url": stand_in.url + "/media/clip.mp4"}])
    stand_in.route("/api/v1/streaming/hashtag",
                   sse_stream([("update", json.dumps(first)), ("delete", "100")]),  # then drops
                   Reply(503, "overloaded"),
                   Reply(429, "slow down", {"Retry-After": "0"}),
                   sse_stream([("update", "{truncated"), ("update", json.dumps(status("103", "x", created_at="soon"))),
                               ("update", json.dumps(second))]))
    settings = connector_settings.replace(mastodon_url=stand_in.url, mastodon_stream="hashtag:mood",
                                          mastodon_token="tok")
    with EventProducer(settings, source="mastodon") as producer:
        stream = MastodonStream(settings, Ingestor(settings, producer, source="mastodon"))
        assert stream.run(threading.Event(), max_statuses=4) == 0
    assert stream.connections == 2
    requests_seen = stand_in.requests_to("/api/v1/streaming/hashtag")
    assert len(requests_seen) == 4
    assert requests_seen[0].query == {"tag": ["mood"]} and requests_seen[0].headers["Authorization"] == "Bearer tok"

    posts = [Post.from_json_bytes(r.value) for r in read_topic(settings, POSTS, 2)]
    by_id = {p.event_id: p for p in posts}
    host = "127.0.0.1"
    happy = by_id[f"mastodon:{host}:101"]
    assert (happy.user_id, happy.text, happy.language, happy.source) == (f"alice@{host}", "So happy today & sunny", "en", "mastodon")
    assert happy.media[0].content_type == "image/png"
    assert by_id[f"mastodon:{host}:102"].user_id == "bob@other.host"
    (video,) = read_topic(settings, VIDEOS, 1)
    assert video.key == b"bob@other.host" and len(VideoClip.from_json_bytes(video.value).frames) == 6
    letters = [DeadLetter.from_json_bytes(r.value) for r in read_topic(settings, DEAD_LETTERS, 2)]
    assert sorted(l.reason for l in letters) == [Reason.BAD_TIMESTAMP, Reason.MALFORMED_JSON]
    assert {l.source for l in letters} == {"mastodon"}


def test_mastodon_from_the_cli(connector_settings: Settings, stand_in: StandIn) -> None:
    stand_in.route("/api/v1/streaming/public/local", sse_stream([("update", json.dumps(status("7", "<p>hi</p>")))]))
    args = cli_args(connector_settings) + ["--set", f"mastodon_url={stand_in.url}", "--set", "mastodon_stream=public:local"]
    assert cli.main(args + ["ingest", "mastodon", "--max-statuses", "1"]) == 0
    (record,) = read_topic(connector_settings, POSTS, 1)
    assert record.key == b"alice@127.0.0.1" and Post.from_json_bytes(record.value).text == "hi"
