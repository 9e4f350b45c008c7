"""Versioned event records: what the connectors write to Kafka and the pipeline reads back.

JSON on the wire, UTF-8, timestamps as ISO-8601 UTC (``2024-05-01T12:00:00.000000Z``); each is a
:class:`connectors.record.Record`. Reading is strict: a missing field, an unknown field, a wrong type, a timestamp without a UTC offset or a value
out of range raises :class:`ValidationError`, whose message names the field and the problem and whose
``reason`` is a short stable code (the dead-letter reason). Reading any bytes raises nothing else.
Strings must be valid Unicode (JSON's ``\\ud800`` escapes can smuggle in lone surrogates, which no
UTF-8 writer can write back), and a record's time must lie in [:data:`connectors.record.EARLIEST_TIME`,
:data:`connectors.record.LATEST_TIME`): Kafka timestamps cannot be negative, and windows and formatting need headroom
below year 9999.

>>> from moodshift.connectors.record import parse_time
>>> post = Post(event_id="e1", user_id="u1", event_time=parse_time("2024-05-01T12:00:00Z"), text="hi")
>>> raw = post.to_json_bytes()
>>> Post.from_json_bytes(raw) == post, post.event_time_s, post.kafka_key
(True, 1714564800.0, 'u1')
>>> Post.from_json_bytes(b'{"event_id": "e1", "user_id": 7}')
Traceback (most recent call last):
...
moodshift.connectors.record.ValidationError: user_id: expected a string, got int
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from moodshift.connectors.record import Record, require, require_id, utc_now, writable

# -- records ---------------------------------------------------------------------------------------

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class MediaRef(Record):
    """A claim check: a blob in the content-addressed media store (see :mod:`connectors.media`).

    >>> MediaRef(sha256="ab" * 32, content_type="image/jpeg", size_bytes=3).to_dict()["size_bytes"]
    3
    """

    sha256: str
    content_type: str
    size_bytes: int
    source_url: str | None = None

    def _check(self) -> None:
        require(bool(_SHA256.fullmatch(self.sha256)), "sha256", "must be 64 lowercase hex digits")
        require(self.size_bytes >= 0, "size_bytes", "must not be negative")
        require("/" in self.content_type, "content_type", "must be a MIME type like image/jpeg")


@dataclass(frozen=True)
class Post(Record):
    """A user's post: text and media references (images fetched into the media store).

    >>> p = Post(event_id="x:1", user_id="u", event_time=utc_now(), text="so happy", source="replay")
    >>> Post.from_json_bytes(p.to_json_bytes()).text
    'so happy'
    """

    TIME_FIELD: ClassVar[str] = "event_time"
    KEY_FIELD: ClassVar[str] = "user_id"

    event_id: str
    user_id: str
    event_time: datetime
    text: str = ""
    media: tuple[MediaRef, ...] = ()
    language: str | None = None
    source: str = "unknown"

    def _check(self) -> None:
        require_id(self.event_id, "event_id")
        require_id(self.user_id, "user_id")


@dataclass(frozen=True)
class VideoClip(Record):
    """A short video: the clip, its sampled frames and its mono audio track, all as media references.

    ``frames[i]`` was shown at ``frame_times_s[i]`` seconds into the clip; frames are sampled at
    ``frames_per_second``. ``audio`` is a float32 mono ``.npy`` at ``audio_sample_rate`` Hz (None when
    the clip has no audio track).

    >>> ref = MediaRef(sha256="0" * 64, content_type="video/mp4", size_bytes=10)
    >>> clip = VideoClip(event_id="v1", user_id="u", event_time=utc_now(), clip=ref,
    ...                  duration_s=5.0, frame_rate=24.0, width=64, height=48)
    >>> VideoClip.from_json_bytes(clip.to_json_bytes()).frames
    ()
    """

    TIME_FIELD: ClassVar[str] = "event_time"
    KEY_FIELD: ClassVar[str] = "user_id"

    event_id: str
    user_id: str
    event_time: datetime
    clip: MediaRef
    duration_s: float
    frame_rate: float
    width: int
    height: int
    frames: tuple[MediaRef, ...] = ()
    frame_times_s: tuple[float, ...] = ()
    frames_per_second: float = 0.0
    audio: MediaRef | None = None
    audio_sample_rate: int | None = None
    text: str = ""
    source: str = "unknown"

    def _check(self) -> None:
        require_id(self.event_id, "event_id")
        require_id(self.user_id, "user_id")
        require(self.duration_s >= 0, "duration_s", "must not be negative")
        require(len(self.frames) == len(self.frame_times_s), "frame_times_s", "must have one time per frame")
        require((self.audio is None) == (self.audio_sample_rate is None), "audio_sample_rate",
                 "must be given exactly when audio is")


@dataclass(frozen=True)
class WeatherObservation(Record):
    """Weather at a configured location (Open-Meteo); ``kind`` is ``current`` or ``hourly``.

    >>> w = WeatherObservation(location_id="berlin", latitude=52.5, longitude=13.4,
    ...                        observed_time=utc_now(), temperature_c=21.5)
    >>> w.kafka_key
    'berlin'
    """

    TIME_FIELD: ClassVar[str] = "observed_time"
    KEY_FIELD: ClassVar[str] = "location_id"

    location_id: str
    latitude: float
    longitude: float
    observed_time: datetime
    temperature_c: float | None = None
    relative_humidity_pct: float | None = None
    precipitation_mm: float | None = None
    wind_speed_kmh: float | None = None
    weather_code: int | None = None
    kind: str = "current"
    source: str = "open-meteo"

    def _check(self) -> None:
        require_id(self.location_id, "location_id")
        require(-90 <= self.latitude <= 90, "latitude", "must be within [-90, 90]")
        require(-180 <= self.longitude <= 180, "longitude", "must be within [-180, 180]")
        require(self.kind in ("current", "hourly"), "kind", "must be 'current' or 'hourly'")


@dataclass(frozen=True)
class MarketTick(Record):
    """One OHLCV bar of a symbol; ``interval`` is the bar length (``1m`` intraday, ``1d`` daily).

    >>> t = MarketTick(symbol="^GSPC", observed_time=utc_now(), open=1.0, high=2.0, low=0.5, close=1.5,
    ...                volume=100, interval="1d")
    >>> t.kafka_key
    '^GSPC'
    """

    TIME_FIELD: ClassVar[str] = "observed_time"
    KEY_FIELD: ClassVar[str] = "symbol"

    symbol: str
    observed_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    interval: str
    source: str = "yahoo"

    def _check(self) -> None:
        require_id(self.symbol, "symbol")
        require(self.low <= min(self.open, self.close) and self.high >= max(self.open, self.close),
                 "high", "low <= open, close <= high must hold")
        require(self.volume >= 0, "volume", "must not be negative")


# Dead letters keep at most this much of the original so that they fit into a Kafka message.
DEAD_LETTER_MAX_ORIGINAL_BYTES = 256 * 1024
DEAD_LETTER_MAX_KEY_CHARS = 256  # as ids: a rejected over-long id must not make the letter too big


@dataclass(frozen=True)
class DeadLetter(Record):
    """Input that could not become an event, with why: the original bytes, the source, the reason.

    >>> from moodshift.connectors.record import Reason
    >>> dl = DeadLetter.create(b"{oops", source="replay", topic="posts", reason=Reason.MALFORMED_JSON,
    ...                        message="$: not valid JSON")
    >>> DeadLetter.from_json_bytes(dl.to_json_bytes()).original, dl.reason
    (b'{oops', 'malformed_json')
    """

    TIME_FIELD: ClassVar[str] = "time"
    KEY_FIELD: ClassVar[str] = "source"

    original_b64: str
    original_size: int
    original_truncated: bool
    source: str
    topic: str  # the logical topic the input was meant for
    reason: str
    message: str
    time: datetime
    key: str | None = None  # the record's key when known (user id, ...)

    @classmethod
    def create(
        cls, original: bytes, *, source: str, topic: str, reason: str, message: str,
        key: str | None = None, time: datetime | None = None,
    ) -> "DeadLetter":
        kept = original[:DEAD_LETTER_MAX_ORIGINAL_BYTES]
        return cls(
            original_b64=base64.b64encode(kept).decode(), original_size=len(original),
            original_truncated=len(kept) < len(original), source=source, topic=topic, reason=str(reason),
            message=writable(message[:2000]), time=time or utc_now(),
            key=None if key is None else writable(key[:DEAD_LETTER_MAX_KEY_CHARS]),
        )

    @property
    def original(self) -> bytes:
        return base64.b64decode(self.original_b64)
