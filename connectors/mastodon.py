"""Posts from a Mastodon server's streaming API (server-sent events), reconnecting with backoff.

``GET {mastodon_url}/api/v1/streaming/public`` (``public:local`` → ``/public/local``,
``hashtag:<tag>`` → ``/hashtag?tag=<tag>``) with the bearer token when one is set. Each ``update``
event carries a status; it becomes a post submission for the :class:`~connectors.ingest.Ingestor`
(so validation, safe media fetching and dead letters are the same as for every other source):

- ``event_id`` ``mastodon:<host>:<status id>``, ``user_id`` the account's ``acct`` with its domain
  (``alice@example.social``), ``event_time`` ``created_at``, ``language``;
- ``text``: the content's HTML as plain text (paragraphs and line breaks kept), after the content
  warning if there is one;
- image attachments as ``media_urls``; each video or gifv attachment as its own video submission.

Other events (``delete``, ``status.update``, ``notification``) are skipped. A dropped connection, a
429 or a 5xx reconnects after a backoff; the backoff resets once events flow again.

>>> html_to_text('<p>Rainy <a href="https://x/tags/monday">#<span>monday</span></a> &amp; sad</p><p>line<br>two</p>')
'Rainy #monday & sad\\nline\\ntwo'
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit

import requests

from moodshift.connectors import metrics
from moodshift.connectors.backoff import Backoff, retry_after_seconds
from moodshift.connectors.ingest import Ingestor, Outcome
from moodshift.connectors.settings import ConnectorSettings

log = logging.getLogger(__name__)


# -- server-sent events ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerSentEvent:
    """One event of a ``text/event-stream``: its type and its (joined) data lines."""

    event: str
    data: str


def parse_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Events from the lines of an event stream (comments such as ``:thump`` heartbeats are skipped).

    >>> list(parse_sse([":thump", "event: update", 'data: {"id": "1"}', "", "event: delete", "data: 7", ""]))
    [ServerSentEvent(event='update', data='{"id": "1"}'), ServerSentEvent(event='delete', data='7')]
    """
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield ServerSentEvent(event, "\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


# -- statuses → submissions ------------------------------------------------------------------------

class _TextExtractor(HTMLParser):
    BREAKS = {"br", "p", "div", "li", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.BREAKS and self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str) -> str:
    """Mastodon's status HTML as plain text: tags dropped, entities decoded, blocks on their own line."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    return "\n".join(line.strip() for line in "".join(extractor.parts).strip().splitlines())


def status_submissions(status: dict[str, Any], host: str) -> list[dict[str, Any]]:
    """The post (and video) submissions for one Mastodon status."""
    account = status.get("account") or {}
    acct = account.get("acct")
    user_id = acct if not isinstance(acct, str) or "@" in acct else f"{acct}@{host}"
    event_id = f"mastodon:{host}:{status.get('id')}"
    text = html_to_text(status.get("content") or "")
    if status.get("spoiler_text"):
        text = f"{status['spoiler_text']}\n{text}"
    attachments = [a for a in status.get("media_attachments") or [] if isinstance(a, dict)]
    post = {"event_id": event_id, "user_id": user_id, "event_time": status.get("created_at"), "text": text,
            "language": status.get("language"), "source": "mastodon",
            "media_urls": [a.get("url") for a in attachments if a.get("type") == "image"]}
    videos = [{"kind": "video", "event_id": f"{event_id}:{a.get('id')}", "user_id": user_id,
               "event_time": status.get("created_at"), "text": text, "source": "mastodon", "url": a.get("url")}
              for a in attachments if a.get("type") in ("video", "gifv")]
    return [post, *videos]


# -- the stream ------------------------------------------------------------------------------------

def stream_url(settings: ConnectorSettings) -> tuple[str, dict[str, str]]:
    """The streaming URL and query for ``mastodon_stream``."""
    base = settings.mastodon_url.rstrip("/") + "/api/v1/streaming/"
    kind, _, tag = settings.mastodon_stream.partition(":")
    if kind == "public":
        return base + ("public/local" if tag == "local" else "public"), {}
    if kind == "hashtag" and tag:
        return base + "hashtag", {"tag": tag}
    raise ValueError(f"mastodon_stream: {settings.mastodon_stream!r} is not public, public:local or hashtag:<tag>")


class MastodonStream:
    """Reads a Mastodon timeline stream and submits its statuses until ``stop`` is set.

    >>> from moodshift.connectors.producer import EventProducer, RecordingClient
    >>> settings = ConnectorSettings(mastodon_url="https://example.social", mastodon_stream="hashtag:rain")
    >>> stream = MastodonStream(settings, Ingestor(settings, EventProducer(settings, "m", client=RecordingClient()),
    ...                                            source="mastodon"))
    >>> stream.url, stream.params
    ('https://example.social/api/v1/streaming/hashtag', {'tag': 'rain'})
    """

    name = "mastodon"

    def __init__(self, settings: ConnectorSettings, ingestor: Ingestor, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.ingestor = ingestor
        self.url, self.params = stream_url(settings)
        self.host = urlsplit(settings.mastodon_url).hostname or "mastodon"
        self.session = session or requests.Session()
        self.backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds, source=self.name)
        self.outcomes: list[Outcome] = []  # the latest few, for status and tests
        self.connections = 0

    def run(self, stop: threading.Event, max_statuses: int | None = None) -> int:
        """Stream (reconnecting) until ``stop`` or ``max_statuses`` statuses; return 0."""
        statuses = 0
        while not stop.is_set():
            retry_after = None
            try:
                statuses += self._read_stream(stop, None if max_statuses is None else max_statuses - statuses)
                if max_statuses is not None and statuses >= max_statuses:
                    break
                detail = "disconnected"
            except _StreamRefused as refused:
                detail, retry_after = refused.detail, refused.retry_after
            except requests.RequestException as error:
                detail = "timeout" if isinstance(error, requests.Timeout) else "network"
            metrics.FETCH_ERRORS.labels(reason=detail).inc()
            if not stop.is_set():
                delay = self.backoff.sleep(stop, retry_after)
                log.warning("mastodon: stream %s; reconnected after %.1fs", detail, delay)
        self.ingestor.producer.flush()
        return 0

    def _read_stream(self, stop: threading.Event, limit: int | None) -> int:
        headers = {"Accept": "text/event-stream"}
        if self.settings.mastodon_token:
            headers["Authorization"] = f"Bearer {self.settings.mastodon_token}"
        # The read timeout is longer than Mastodon's heartbeat interval (comments every ~10-15 s).
        timeout = (self.settings.fetch_timeout_seconds, max(self.settings.fetch_timeout_seconds, 60.0))
        with self.session.get(self.url, params=self.params, headers=headers, stream=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise _StreamRefused(response)
            self.connections += 1
            statuses = 0
            lines = itertools.takewhile(lambda _: not stop.is_set(), response.iter_lines(decode_unicode=True))
            for event in parse_sse(lines):
                if event.event != "update":
                    continue
                self.backoff.reset()
                metrics.LAST_SUCCESS.labels(source=self.name).set_to_current_time()
                self._submit(event.data.encode())
                statuses += 1
                if limit and statuses >= limit:
                    break
            return statuses

    def _submit(self, raw: bytes) -> None:
        try:
            status = json.loads(raw)
            if not isinstance(status, dict):
                raise ValueError("not an object")
        except ValueError:
            self.outcomes.append(self.ingestor.submit(raw))  # dead-lettered as malformed / wrong type
            return
        for submission in status_submissions(status, self.host):
            self.outcomes.append(self.ingestor.submit_object(submission, raw))
        del self.outcomes[:-100]


class _StreamRefused(Exception):
    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.detail = "rate_limited" if response.status_code == 429 else "http_status"
        self.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
