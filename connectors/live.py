"""What the polling sources (weather, market) share: the poll loop with backoff, HTTP GETs that say
why they failed, and a filter that lets only changed observations through.

>>> changes = ChangeFilter()
>>> changes.changed(("berlin", "current"), (20.5, 60)), changes.changed(("berlin", "current"), (20.5, 60))
(True, False)
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any, Hashable, Protocol

import requests

from connectors import metrics
from connectors.backoff import Backoff, retry_after_seconds
from connectors.producer import DeliveryFailed, EventProducer
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class SourceError(Exception):
    """A poll that failed; ``detail`` labels ``fetch_errors_total``; ``retry_after`` is the server's wish."""

    def __init__(self, detail: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.detail = detail
        self.retry_after = retry_after


class PollingSource(Protocol):
    name: str
    producer: EventProducer
    changes: "ChangeFilter"

    def poll(self) -> int:
        """Fetch once and send what is new; return how many records were sent; raise on failure."""


def http_get(session: requests.Session, url: str, *, params: Any = None, timeout: float, **kwargs: Any) -> requests.Response:
    """GET that raises :class:`SourceError` for timeouts, network errors, 429 (with Retry-After) and
    other non-2xx answers."""
    try:
        response = session.get(url, params=params, timeout=timeout, **kwargs)
    except requests.Timeout:
        raise SourceError("timeout", f"{url}: no answer within {timeout}s") from None
    except requests.RequestException as error:
        raise SourceError("network", f"{url}: {error}") from None
    if response.status_code == 429:
        raise SourceError("rate_limited", f"{url}: HTTP 429", retry_after_seconds(response.headers.get("Retry-After")))
    if not response.ok:
        raise SourceError("http_status", f"{url}: HTTP {response.status_code}",
                          retry_after_seconds(response.headers.get("Retry-After")))
    return response


def run_polling(
    source: PollingSource, settings: Settings, interval_s: float, stop: threading.Event, *,
    polls: int | None = None, max_failures: int | None = None,
) -> int:
    """Poll every ``interval_s`` until ``stop`` (or ``polls`` successful polls); back off on failures.

    Returns 0, or 1 after ``max_failures`` failures in a row.
    """
    backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds, source=source.name)
    done = failures = 0
    while not stop.is_set():
        try:
            sent = source.poll()
            source.producer.flush()
        except Exception as error:  # noqa: BLE001 - every failure backs off; none may end the loop
            failures += 1
            detail = error.detail if isinstance(error, SourceError) else type(error).__name__
            if isinstance(error, DeliveryFailed):  # what was not delivered must count as new again
                source.changes.clear()
            metrics.FETCH_ERRORS.labels(reason=detail).inc()
            if max_failures is not None and failures >= max_failures:
                log.error("%s: giving up after %d failures in a row: %s", source.name, failures, error)
                return 1
            delay = backoff.sleep(stop, getattr(error, "retry_after", None))
            log.warning("%s: poll failed (%s); retried after %.1fs", source.name, error, delay)
            continue
        failures = 0
        backoff.reset()
        metrics.LAST_SUCCESS.labels(source=source.name).set_to_current_time()
        log.debug("%s: sent %d records", source.name, sent)
        done += 1
        if polls is not None and done >= polls:
            return 0
        stop.wait(interval_s)
    return 0


class ChangeFilter:
    """Remembers the last value per key (the newest ``max_keys`` keys) and says whether it changed."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._last: OrderedDict[Hashable, Hashable] = OrderedDict()

    def changed(self, key: Hashable, value: Hashable) -> bool:
        if key in self._last and self._last[key] == value:
            self._last.move_to_end(key)
            return False
        self._last[key] = value
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        return True

    def clear(self) -> None:
        self._last.clear()
