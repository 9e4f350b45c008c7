"""One submitted item → a validated ``Post`` or ``VideoClip`` in Kafka, or a dead letter with a reason.

Replays, the HTTP endpoint and the Mastodon client all submit items here, so every source validates,
fetches media and dead-letters the same way. A submission is the wire record without the parts the
connector fills in:

- a post (``"kind": "post"``, the default for ``ingest posts``): the :class:`Post` fields, where
  ``media`` is replaced by ``media_urls`` (a list of image URLs, fetched safely into the media store)
  and ``source`` may be left out;
- a video (``"kind": "video"``): ``event_id``, ``user_id``, ``event_time``, optional ``text``, and
  ``url`` (fetched safely) or, for file replays only, ``path`` (relative to the file it came from).

Beyond the schema, an item is rejected when its text is longer than ``max_text_chars`` or its event
time is more than ``max_clock_skew_seconds`` in the future.

>>> from moodshift.connectors.producer import RecordingClient
>>> settings = ConnectorSettings(media_dir=Path("/tmp/doc-media"))
>>> producer = EventProducer(settings, "doc", client=RecordingClient())
>>> ingestor = Ingestor(settings, producer, source="doc")
>>> ingestor.submit(b'{"event_id": "e1", "user_id": "u1", "event_time": "2024-05-01T12:00:00Z", "text": "yay"}')
Outcome(accepted=True, topic='posts', key='u1', event_id='e1', reason=None, message=None)
>>> ingestor.submit(b'{"event_id": "e2", "user_id": "u1", "event_time": "yesterday"}').reason
'bad_timestamp'
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from moodshift.connectors.fetch import SafeFetcher
from moodshift.connectors.media import MediaStore
from moodshift.connectors.producer import EventProducer
from moodshift.connectors.record import Reason, Rejected, ValidationError, parse_json_object, parse_time, utc_now, writable
from moodshift.connectors.schemas import MediaRef, Post, VideoClip
from moodshift.connectors.topics import POSTS, VIDEOS
from moodshift.connectors.video import extract_clip_media
from moodshift.connectors.settings import ConnectorSettings

log = logging.getLogger(__name__)

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
VIDEO_TYPES = ("video/",)
KINDS = {"post": POSTS, "video": VIDEOS}


@dataclass(frozen=True)
class Outcome:
    """What happened to one item: accepted into ``topic`` under ``key``, or rejected with a reason."""

    accepted: bool
    topic: str | None
    key: str | None
    event_id: str | None
    reason: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": "accepted" if self.accepted else "rejected",
                **{k: v for k, v in asdict(self).items() if k != "accepted" and v is not None}}


class Ingestor:
    """Validates submissions, stores their media, and produces them or their dead letters.

    ``allow_local_paths`` lets video items name local files (file replays); the HTTP endpoint leaves
    it off, since a path there would let a client read the server's files.
    """

    def __init__(
        self, settings: ConnectorSettings, producer: EventProducer, *, source: str,
        store: MediaStore | None = None, fetcher: SafeFetcher | None = None,
        allow_local_paths: bool = False, now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.source = source
        self.store = store or MediaStore.from_settings(settings)
        self.fetcher = fetcher or SafeFetcher(settings)
        self.allow_local_paths = allow_local_paths
        self.now = now

    def submit(self, raw: bytes, default_kind: str = "post", base_dir: Path | None = None) -> Outcome:
        """Ingest one item given as UTF-8 JSON bytes (the bytes a dead letter keeps)."""
        try:
            item = parse_json_object(raw)
        except ValidationError as error:
            return self._reject(raw, KINDS[default_kind], error, key=None, event_id=None)
        return self.submit_object(item, raw, default_kind, base_dir)

    def submit_object(
        self, item: dict[str, Any], original: bytes, default_kind: str = "post", base_dir: Path | None = None,
    ) -> Outcome:
        """Ingest one already parsed item; ``original`` is what a dead letter keeps."""
        kind = item.get("kind", default_kind)
        topic = KINDS.get(kind, KINDS[default_kind]) if isinstance(kind, str) else KINDS[default_kind]
        key, event_id = (writable(v) if isinstance(v, str) else None for v in (item.get("user_id"), item.get("event_id")))
        try:
            if not isinstance(kind, str) or kind not in KINDS:
                raise ValidationError("kind", f"{str(kind)[:40]!r} is not one of {sorted(KINDS)}")
            fields = {k: v for k, v in item.items() if k != "kind"}
            fields.setdefault("source", self.source)
            record = self._post(fields) if kind == "post" else self._video(fields, base_dir)
        except Rejected as error:
            return self._reject(original, topic, error, key, event_id)
        except Exception as error:  # a bug must not stop the connector, nor lose the item
            log.exception("unexpected error ingesting an item")
            return self._reject(original, topic, Rejected(Reason.INTERNAL_ERROR, repr(error)), key, event_id)
        if not self.producer.send_event(topic, record, original=original):
            return Outcome(False, topic, key, event_id, Reason.OVERSIZED, "record over max_message_bytes")
        return Outcome(True, topic, record.kafka_key, record.event_id)

    # -- building records --------------------------------------------------------------------------

    def _post(self, fields: dict[str, Any]) -> Post:
        urls = _string_list(fields.pop("media_urls", []), "media_urls")
        if "media" in fields:
            raise ValidationError("media", "is filled in by the connector; send media_urls", Reason.UNKNOWN_FIELD)
        self._admit(fields)  # before fetching anything for an item that is rejected anyway
        post = Post.from_dict(fields)
        media = tuple(self._store_url(url, IMAGE_TYPES) for url in urls)
        return dataclasses.replace(post, media=media)

    def _video(self, fields: dict[str, Any], base_dir: Path | None) -> VideoClip:
        url, path = fields.pop("url", None), fields.pop("path", None)
        self._admit(fields)
        header = {k: fields.pop(k) for k in ("event_id", "user_id", "event_time", "text", "source") if k in fields}
        if fields:
            raise ValidationError(sorted(fields)[0], "is not a field of a video submission", Reason.UNKNOWN_FIELD)
        if (url is None) == (path is None):
            raise ValidationError("url", "give exactly one of url and path", Reason.MISSING_FIELD)
        if path is not None:
            if not self.allow_local_paths:
                raise ValidationError("path", "local paths are not accepted from this source", Reason.FETCH_REFUSED)
            if not isinstance(path, str):
                raise ValidationError("path", "expected a string", Reason.WRONG_TYPE)
            local = (base_dir or Path.cwd()) / path
            if not local.is_file():
                raise ValidationError("path", f"{local} is not a file", Reason.BAD_VALUE)
            clip = self.store.put_file(local, "video/" + (local.suffix.lstrip(".").lower() or "mp4"))
        else:
            if not isinstance(url, str):
                raise ValidationError("url", "expected a string", Reason.WRONG_TYPE)
            clip = self._store_url(url, VIDEO_TYPES)
        media = extract_clip_media(self.store, self.store.path(clip), self.settings)
        return VideoClip.from_dict({**header, "clip": clip.to_dict()} | {
            "duration_s": media.duration_s, "frame_rate": media.frame_rate, "width": media.width,
            "height": media.height, "frames": [r.to_dict() for r in media.frames],
            "frame_times_s": list(media.frame_times_s), "frames_per_second": media.frames_per_second,
            "audio": media.audio.to_dict() if media.audio else None, "audio_sample_rate": media.audio_sample_rate,
        })

    def _store_url(self, url: str, accept: tuple[str, ...]) -> MediaRef:
        """Fetch ``url`` safely into the media store; the reference remembers the URL."""
        fetched = self.fetcher.fetch(url, accept)
        return self.store.put(fetched.data, fetched.content_type, source_url=url)

    def _admit(self, fields: dict[str, Any]) -> None:
        text = fields.get("text")
        if isinstance(text, str) and len(text) > self.settings.max_text_chars:
            raise ValidationError("text", f"{len(text)} characters, over max_text_chars="
                                          f"{self.settings.max_text_chars}", Reason.TEXT_TOO_LONG)
        if "event_time" in fields:
            event_time = parse_time(fields["event_time"], "event_time")
            limit = self.now() + timedelta(seconds=self.settings.max_clock_skew_seconds)
            if event_time > limit:
                raise ValidationError("event_time", f"{fields['event_time']} is more than "
                                      f"{self.settings.max_clock_skew_seconds}s in the future", Reason.CLOCK_SKEW)

    def _reject(self, original: bytes, topic: str, error: Rejected, key: str | None, event_id: str | None) -> Outcome:
        self.producer.send_dead_letter(original, topic=topic, reason=error.reason, message=str(error), key=key)
        return Outcome(False, topic, key, event_id, error.reason, str(error))


def _string_list(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(field, "expected a list of URL strings", Reason.WRONG_TYPE)
    return value

