"""A circuit breaker for a polled source: after enough failures in a row, stop calling it for a while.

Closed: calls go through; ``failure_threshold`` failures in a row open the circuit. Open: no call
for ``cooldown_seconds``. Then half-open: one trial call; success closes the circuit, failure opens
it for another cool-down. The state is the gauge ``moodshift_connector_circuit_state{source}``
(0 closed, 1 open, 2 half-open); each change counts in
``moodshift_connector_circuit_transitions_total{source,to}`` and is logged.

>>> clock = [0.0]
>>> breaker = CircuitBreaker("doc", failure_threshold=2, cooldown_seconds=10, clock=lambda: clock[0])
>>> breaker.record_failure(); breaker.state.name, breaker.wait_seconds()
('CLOSED', 0.0)
>>> breaker.record_failure(); breaker.state.name, breaker.wait_seconds()
('OPEN', 10.0)
>>> clock[0] = 10.0; breaker.wait_seconds(), breaker.state.name  # the cool-down is over: one trial
(0.0, 'HALF_OPEN')
>>> breaker.record_success(); breaker.state.name
'CLOSED'
"""

from __future__ import annotations

import logging
import time
from enum import IntEnum
from typing import Callable

from moodshift.connectors import metrics

log = logging.getLogger(__name__)


class CircuitState(IntEnum):
    """The gauge's values."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CircuitBreaker:
    """Counts a source's failures in a row and says how long to wait before the next call.

    Not thread-safe: one poll loop owns it. ``clock`` is monotonic seconds (tests pass their own).
    """

    def __init__(
        self, source: str, failure_threshold: int, cooldown_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"circuit failure_threshold: must be at least 1, got {failure_threshold}")
        self.source = source
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self.failures = 0  # in a row
        self.state = CircuitState.CLOSED
        self._opened_at = 0.0
        metrics.CIRCUIT_STATE.labels(source=source).set(CircuitState.CLOSED)

    def wait_seconds(self) -> float:
        """0 when a call may go now (closed, or the half-open trial), else the cool-down left."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        left = self._opened_at + self.cooldown_seconds - self._clock()
        if left > 0:
            return left
        self._move(CircuitState.HALF_OPEN, "cool-down over, one trial call")
        return 0.0

    def record_success(self) -> None:
        self.failures = 0
        if self.state is not CircuitState.CLOSED:
            self._move(CircuitState.CLOSED, "the trial call succeeded")

    def record_failure(self) -> None:
        self.failures += 1
        if self.state is CircuitState.HALF_OPEN:
            self._open("the trial call failed")
        elif self.state is CircuitState.CLOSED and self.failures >= self.failure_threshold:
            self._open(f"{self.failures} failures in a row")

    def _open(self, why: str) -> None:
        self._opened_at = self._clock()
        self._move(CircuitState.OPEN, f"{why}; no call for {self.cooldown_seconds:g}s")

    def _move(self, state: CircuitState, why: str) -> None:
        self.state = state
        metrics.CIRCUIT_STATE.labels(source=self.source).set(state)
        metrics.CIRCUIT_TRANSITIONS.labels(source=self.source, to=state.name.lower()).inc()
        level = logging.WARNING if state is CircuitState.OPEN else logging.INFO
        log.log(level, "%s: circuit %s: %s", self.source, state.name.lower().replace("_", "-"), why)
