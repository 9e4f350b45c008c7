"""The one Kafka producer every source uses: keys, acks=all, idempotence, compression, dead letters.

kafka-python retries a failed send itself until ``producer_delivery_timeout_ms`` (idempotence makes
those retries safe; a resend by us would not be), then the record's future fails. A failure is logged
and counted at once and raised by the next :meth:`EventProducer.flush` as :class:`DeliveryFailed`, so
a replay ends with a non-zero exit and a live source backs off: never dropped silently.

>>> from moodshift.connectors.record import utc_now
>>> from moodshift.connectors.schemas import Post
>>> from moodshift.connectors.settings import ConnectorSettings
>>> from moodshift.connectors.topics import POSTS
>>> producer = EventProducer(ConnectorSettings(), source="doc", client=RecordingClient())
>>> post = Post(event_id="e1", user_id="u1", event_time=utc_now(), text="hello")
>>> producer.send_event(POSTS, post)
True
>>> producer.client.sent[0][:2]
('moodshift.posts', b'u1')
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kafka import KafkaProducer

from moodshift.connectors import metrics
from moodshift.connectors.record import Reason, Record
from moodshift.connectors.schemas import DeadLetter
from moodshift.connectors.topics import DEAD_LETTERS
from moodshift.connectors.settings import ConnectorSettings

log = logging.getLogger(__name__)

LINGER_MS = 5  # a little batching for replays; live sources barely notice 5 ms


class DeliveryFailed(RuntimeError):
    """Kafka did not acknowledge some records after the producer's retries."""

    def __init__(self, count: int, first_error: BaseException) -> None:
        super().__init__(f"{count} record(s) not delivered; first error: {first_error!r}")
        self.count = count
        self.first_error = first_error


class EventProducer:
    """Sends records keyed by their ``kafka_key`` and dead letters, checking the size limit first.

    ``client`` is a ``KafkaProducer`` built from the settings unless given (tests pass a stand-in).
    """

    def __init__(self, settings: ConnectorSettings, source: str, client: Any | None = None) -> None:
        self.settings = settings
        self.source = source
        self.client = client if client is not None else KafkaProducer(
            acks="all",
            enable_idempotence=True,
            compression_type=settings.producer_compression or None,
            delivery_timeout_ms=settings.producer_delivery_timeout_ms,
            request_timeout_ms=min(30_000, settings.producer_delivery_timeout_ms - LINGER_MS),
            max_block_ms=settings.producer_delivery_timeout_ms,
            bootstrap_timeout_ms=settings.producer_delivery_timeout_ms,
            # Our own size check rejects first; the client's cap must not be the tighter one.
            max_request_size=max(settings.max_message_bytes + 65_536, 1_048_576),
            linger_ms=LINGER_MS,
            **settings.kafka_python_config(),
        )
        self._lock = threading.Lock()
        self._failures: list[BaseException] = []

    # -- sending -----------------------------------------------------------------------------------

    def send_event(self, topic: str, event: Record, original: bytes | None = None) -> bool:
        """Send ``event`` to the logical ``topic`` keyed by ``event.kafka_key``.

        Returns False when the record is over ``max_message_bytes``: it then went to the dead letters
        (reason ``oversized``, with ``original`` or the encoded event).
        """
        key = event.kafka_key.encode()
        value = event.to_json_bytes()
        if len(key) + len(value) > self.settings.max_message_bytes:
            self.send_dead_letter(
                original if original is not None else value, topic=topic, reason=Reason.OVERSIZED,
                message=f"record is {len(key) + len(value)} bytes, over max_message_bytes="
                        f"{self.settings.max_message_bytes}",
                key=event.kafka_key,
            )
            return False
        self._send(topic, key, value)
        return True

    def send_dead_letter(
        self, original: bytes, *, topic: str, reason: str, message: str, key: str | None = None,
        source: str | None = None,
    ) -> DeadLetter:
        """Send a :class:`DeadLetter` for ``original`` (meant for logical ``topic``) and count it."""
        letter = DeadLetter.create(
            original, source=source or self.source, topic=topic, reason=reason, message=message, key=key,
        )
        metrics.DEAD_LETTERS.labels(source=letter.source, reason=letter.reason).inc()
        log.info("dead letter (%s) from %s for %s: %s", letter.reason, letter.source, topic, letter.message)
        self._send(DEAD_LETTERS, (letter.key or letter.source).encode(), letter.to_json_bytes())
        return letter

    def _send(self, topic: str, key: bytes, value: bytes) -> None:
        # The Kafka timestamp is the send time (the client's default), never the event time (in the
        # payload): the broker ages a producer's idempotence state by its records' timestamps, and
        # forgot that of a producer sending 2016 posts when it restarted, so a retried batch was
        # written twice (a post applied twice, a user's state off; issue 12). Retention, too, counts
        # from the timestamp: replayed old posts were deleted at the next check.
        try:
            future = self.client.send(self.settings.topic(topic), key=key, value=value)
        except Exception as error:  # e.g. metadata not available within max_block_ms
            self._failed(topic, error)
            return
        future.add_callback(lambda _metadata: metrics.RECORDS_SENT.labels(topic=topic).inc())
        future.add_errback(lambda error: self._failed(topic, error))

    def _failed(self, topic: str, error: BaseException) -> None:
        metrics.SEND_ERRORS.labels(topic=topic).inc()
        log.error("send to %s failed after retries: %r", topic, error)
        with self._lock:
            self._failures.append(error)

    # -- completion --------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every record sent so far; raise :class:`DeliveryFailed` if any was not delivered."""
        self.client.flush(timeout=timeout)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise DeliveryFailed(len(failures), failures[0])

    def close(self) -> None:
        """Flush (raising on failures) and close the client."""
        try:
            self.flush()
        finally:
            self.client.close()

    def __enter__(self) -> "EventProducer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _DoneFuture:
    """An already acknowledged send."""

    def add_callback(self, fn: Any) -> None:
        fn(None)

    def add_errback(self, fn: Any) -> None:
        pass


class RecordingClient:
    """A stand-in for ``KafkaProducer`` that keeps ``(topic, key, value)`` in ``sent``; for unit tests."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes, timestamp_ms: int | None = None) -> _DoneFuture:
        self.sent.append((topic, key, value))
        return _DoneFuture()

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass

