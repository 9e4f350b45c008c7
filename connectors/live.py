"""What the polling sources (weather, market) share: the poll loop with backoff and a circuit breaker,
HTTP GETs that say why they failed and finish in time, and a filter that lets only changed
observations through.

A poll that fails waits a backoff delay and tries again; ``circuit_failure_threshold`` failures in a
row open the source's circuit (:mod:`connectors.circuit`): no call for ``circuit_cooldown_seconds``,
then one trial call. A body trickled slower than the timeout cannot hold a poll forever:
:class:`DeadlineSession` makes ``timeout`` a deadline for the whole body, not only for each read.

>>> changes = ChangeFilter()
>>> changes.changed(("berlin", "current"), (20.5, 60)), changes.changed(("berlin", "current"), (20.5, 60))
(True, False)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Hashable, Protocol

import requests
import urllib3

from moodshift.connectors import metrics
from moodshift.connectors.backoff import Backoff, retry_after_seconds
from moodshift.connectors.circuit import CircuitBreaker, CircuitState
from moodshift.connectors.producer import DeliveryFailed, EventProducer
from moodshift.connectors.settings import ConnectorSettings

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


class DeadlineSession(requests.Session):
    """A ``requests.Session`` whose ``timeout`` (seconds, or the read part of a (connect, read) pair)
    also bounds the whole answer, from sending the request to the body's last byte.

    requests' own timeout bounds each socket read, so a server sending one byte a second under a
    2-second timeout could hold a call as long as it likes. Here the body is streamed and the clock
    checked after every read; past the deadline the call raises ``requests.ReadTimeout``. The status
    line and headers are still bounded per read only (http.client reads them, at most 100 header
    lines). Calls with ``stream=True`` or without a timeout are left as they are.

    >>> session = DeadlineSession()
    >>> isinstance(session, requests.Session)  # a drop-in: yfinance accepts it, too
    True
    """

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        timeout = kwargs.get("timeout")
        limit = timeout[1] if isinstance(timeout, tuple) else timeout
        if limit is None or kwargs.get("stream"):
            return super().request(method, url, *args, **kwargs)
        deadline = time.monotonic() + limit
        response = super().request(method, url, *args, **{**kwargs, "stream": True})
        body = bytearray()
        try:
            while chunk := _read_some(response):
                body += chunk
                if time.monotonic() > deadline:
                    raise requests.ReadTimeout(f"{url}: answer not complete within {limit}s", response=response)
        finally:
            response.close()
        response._content, response._content_consumed = bytes(body), True  # as .content would have read
        return response


def _read_some(response: requests.Response) -> bytes:
    """The next bytes of a streamed body as soon as some arrive (b"" at its end), as requests' errors."""
    try:
        return response.raw.read1(65_536, decode_content=True)
    except urllib3.exceptions.TimeoutError as error:  # one read waited longer than the timeout
        raise requests.ReadTimeout(str(error), response=response) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:  # reset, truncated, bad chunking
        raise requests.ConnectionError(str(error), response=response) from None


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
    source: PollingSource, settings: ConnectorSettings, interval_s: float, stop: threading.Event, *,
    polls: int | None = None, max_failures: int | None = None, breaker: CircuitBreaker | None = None,
) -> int:
    """Poll every ``interval_s`` until ``stop`` (or ``polls`` successful polls); back off on failures,
    and wait out the circuit's cool-down while it is open (``breaker``: one from the settings).

    Returns 0, or 1 after ``max_failures`` failures in a row.
    """
    backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds, source=source.name)
    breaker = breaker or CircuitBreaker(source.name, settings.circuit_failure_threshold,
                                        settings.circuit_cooldown_seconds)
    done = failures = 0
    while not stop.is_set():
        if (wait := breaker.wait_seconds()) > 0:
            stop.wait(wait)
            continue
        try:
            sent = source.poll()
            source.producer.flush()
        except Exception as error:  # noqa: BLE001 - every failure backs off; none may end the loop
            failures += 1
            breaker.record_failure()
            detail = error.detail if isinstance(error, SourceError) else type(error).__name__
            if isinstance(error, DeliveryFailed):  # what was not delivered must count as new again
                source.changes.clear()
            metrics.FETCH_ERRORS.labels(reason=detail).inc()
            if max_failures is not None and failures >= max_failures:
                log.error("%s: giving up after %d failures in a row: %s", source.name, failures, error)
                return 1
            if breaker.state is CircuitState.OPEN:
                log.warning("%s: poll failed (%s); circuit open", source.name, error)
                continue
            delay = backoff.sleep(stop, getattr(error, "retry_after", None))
            log.warning("%s: poll failed (%s); retried after %.1fs", source.name, error, delay)
            continue
        failures = 0
        backoff.reset()
        breaker.record_success()
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
