"""Event schemas: round trips, strictness, and messages that name the field and the problem."""

from __future__ import annotations

import doctest
import importlib
import json
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moodshift.connectors.record import Reason, ValidationError, parse_time
from moodshift.connectors.schemas import DEAD_LETTER_MAX_ORIGINAL_BYTES, DeadLetter, MarketTick, MediaRef, Post, VideoClip, WeatherObservation

T = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
REF = MediaRef(sha256="a" * 64, content_type="image/jpeg", size_bytes=10, source_url="http://x/y.jpg")
RECORDS = [
    Post(event_id="e1", user_id="u1", event_time=T, text="héllo 🙂", media=(REF,), language="en", source="t"),
    VideoClip(event_id="v1", user_id="u1", event_time=T, clip=REF, duration_s=5.2, frame_rate=25.0, width=8,
              height=6, frames=(REF, REF), frame_times_s=(0.0, 1.0), frames_per_second=1.0, audio=REF,
              audio_sample_rate=16000),
    WeatherObservation(location_id="berlin", latitude=52.5, longitude=13.4, observed_time=T, temperature_c=20.5,
                       relative_humidity_pct=None, weather_code=3, kind="hourly"),
    MarketTick(symbol="^GSPC", observed_time=T, open=1.0, high=2.0, low=0.5, close=1.5, volume=10, interval="1m"),
    DeadLetter.create(b"\xff raw", source="t", topic="posts", reason=Reason.MALFORMED_JSON, message="m"),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_json_with_utc_timestamps(record) -> None:
    raw = record.to_json_bytes()
    assert type(record).from_json_bytes(raw) == record
    data = json.loads(raw)
    assert data["schema_version"] == type(record).SCHEMA_VERSION
    assert any(isinstance(v, str) and v.endswith("Z") and v.startswith("20") for v in data.values())


def test_event_time_is_available_as_seconds_and_milliseconds() -> None:
    assert RECORDS[0].event_time_s == T.timestamp()
    assert RECORDS[3].event_time_ms == int(T.timestamp()) * 1000
    assert [r.kafka_key for r in RECORDS[:4]] == ["u1", "u1", "berlin", "^GSPC"]


def test_timestamps_with_offsets_become_utc() -> None:
    assert parse_time("2024-05-01T14:00:00+02:00") == T


def post_json(**changes) -> bytes:
    data = {"event_id": "e1", "user_id": "u1", "event_time": "2024-05-01T12:00:00Z", "text": "t"}
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


@pytest.mark.parametrize("raw, reason, message", [
    (b"{not json", Reason.MALFORMED_JSON, "$: not valid UTF-8 JSON"),
    (b"\xff\xfe", Reason.MALFORMED_JSON, "$: not valid UTF-8 JSON"),
    (b"[1, 2]", Reason.WRONG_TYPE, "$: expected a JSON object, got list"),
    (post_json(user_id=...), Reason.MISSING_FIELD, "user_id: is required"),
    (post_json(user_id=7), Reason.WRONG_TYPE, "user_id: expected a string, got int"),
    (post_json(user_id=""), Reason.BAD_VALUE, "user_id: must not be empty"),
    (post_json(text=None), Reason.WRONG_TYPE, "text: expected a string, got null"),
    (post_json(usr="u"), Reason.UNKNOWN_FIELD, "usr: is not a field of Post"),
    (post_json(event_time="2024-05-01 12:00"), Reason.BAD_TIMESTAMP, "event_time: '2024-05-01 12:00' has no UTC offset"),
    (post_json(event_time="yesterday"), Reason.BAD_TIMESTAMP, "event_time: 'yesterday' is not an ISO-8601"),
    (post_json(event_time=1714564800), Reason.WRONG_TYPE, "event_time: expected an ISO-8601 string, got int"),
    (post_json(schema_version=99), Reason.UNSUPPORTED_VERSION, "schema_version: 99 is not a supported version"),
    (post_json(media=[{"sha256": "xyz", "content_type": "image/png", "size_bytes": 1}]), Reason.BAD_VALUE,
     "media[0].sha256: must be 64 lowercase hex digits"),
    (post_json(media=[{"sha256": "a" * 64, "content_type": "image/png", "size_bytes": True}]), Reason.WRONG_TYPE,
     "media[0].size_bytes: expected an integer, got bool"),
    (post_json(media={"sha256": "a"}), Reason.WRONG_TYPE, "media: expected a list, got dict"),
])
def test_invalid_posts_name_the_field_and_the_problem(raw: bytes, reason: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Post.from_json_bytes(raw)
    assert caught.value.reason == reason
    assert str(caught.value).startswith(message)


def test_value_checks_apply_to_market_and_weather() -> None:
    with pytest.raises(ValidationError, match="high: low <= open, close <= high"):
        MarketTick(symbol="X", observed_time=T, open=5, high=2, low=1, close=1.5, volume=0, interval="1d")
    with pytest.raises(ValidationError, match="latitude: must be within"):
        WeatherObservation(location_id="x", latitude=95, longitude=0, observed_time=T)
    with pytest.raises(ValidationError, match="must be finite"):
        WeatherObservation.from_dict({"location_id": "x", "latitude": 1e400, "longitude": 0,
                                      "observed_time": "2024-05-01T12:00:00Z"})


def test_dead_letter_keeps_a_bounded_prefix_of_large_originals() -> None:
    original = bytes(range(256)) * (DEAD_LETTER_MAX_ORIGINAL_BYTES // 128)
    letter = DeadLetter.create(original, source="s", topic="videos", reason="oversized", message="m")
    assert letter.original_truncated and letter.original_size == len(original)
    assert letter.original == original[:DEAD_LETTER_MAX_ORIGINAL_BYTES]
    assert len(letter.to_json_bytes()) < 400_000


@given(text=st.text(max_size=200), user=st.text(min_size=1, max_size=20).filter(str.strip),
       micros=st.integers(0, 4_000_000_000_000_000))
def test_any_post_round_trips(text: str, user: str, micros: int) -> None:
    post = Post(event_id="e", user_id=user, text=text,
                event_time=datetime.fromtimestamp(micros / 1e6, timezone.utc))
    assert Post.from_json_bytes(post.to_json_bytes()) == post


@pytest.mark.parametrize("module", ["schemas", "producer", "media", "fetch", "ingest", "replay", "backoff",
                                    "metrics", "topics", "http_ingest", "video", "circuit", "live"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"moodshift.connectors.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("make", [
    lambda when: Post(event_id="e", user_id="u", event_time=when),
    lambda when: WeatherObservation(location_id="berlin", latitude=52.5, longitude=13.4, observed_time=when),
])
def test_a_record_built_in_code_with_a_naive_time_is_refused_naming_the_field(make) -> None:
    with pytest.raises(ValidationError) as refused:
        make(datetime(2024, 5, 1, 12, 0))
    assert (refused.value.reason, refused.value.problem) == (Reason.BAD_TIMESTAMP, "must be timezone-aware")
    assert refused.value.field in ("event_time", "observed_time")
    assert make(datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc))  # the same time with an offset is fine
