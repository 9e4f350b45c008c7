"""Exponential backoff with full jitter: the one waiting policy of every source that retries.

>>> b = Backoff(initial=1.0, maximum=8.0, random=lambda: 1.0)
>>> [b.next_delay() for _ in range(5)]
[1.0, 2.0, 4.0, 8.0, 8.0]
>>> b.reset(); b.next_delay(retry_after=30.0)  # a server's Retry-After wins, capped by maximum
8.0
"""

from __future__ import annotations

import random as _random
import threading
from email.utils import parsedate_to_datetime
from typing import Callable

from moodshift.connectors import metrics
from moodshift.connectors.record import utc_now


class Backoff:
    """Delays ``initial * 2**n`` (times a jitter factor from ``random``), capped at ``maximum``.

    ``sleep`` waits on a :class:`threading.Event` so that a stop request ends the wait at once, and
    counts the retry in ``moodshift_connector_retries_total{source}``.
    """

    def __init__(
        self, initial: float, maximum: float, *, source: str = "unknown",
        random: Callable[[], float] = lambda: 0.5 + _random.random() / 2,
    ) -> None:
        self.initial, self.maximum, self.source = initial, maximum, source
        self._random = random
        self.attempt = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        base = min(self.maximum, self.initial * 2**self.attempt)
        self.attempt += 1
        if retry_after is not None:
            return min(self.maximum, max(retry_after, 0.0))
        return base * self._random()

    def sleep(self, stop: threading.Event, retry_after: float | None = None) -> float:
        """Wait the next delay (or until ``stop`` is set); return the delay chosen."""
        delay = self.next_delay(retry_after)
        metrics.RETRIES.labels(source=self.source).inc()
        stop.wait(delay)
        return delay

    def reset(self) -> None:
        self.attempt = 0


def retry_after_seconds(header: str | None) -> float | None:
    """An HTTP ``Retry-After`` value (seconds or an HTTP date) in seconds; None if absent or unreadable."""
    if not header:
        return None
    try:
        return float(header)
    except ValueError:
        pass
    try:
        return (parsedate_to_datetime(header) - utc_now()).total_seconds()
    except (TypeError, ValueError):
        return None
