"""When the agent starts its next batch: at most once per interval, and at once when it is behind.

faust's ``take(max, within)`` waits ``within`` after every batch for more events (unless ``max``
arrived), even when events piled up while the batch ran: at 850 posts/s the end-to-end benchmark's
worker spent 40% of its time in that wait, with its model thread idle. The agent takes what faust
buffered in a short tick instead and sleeps only for what is left of the interval since the last
batch started: a light stream still gets one batch per interval (the batching that keeps a post's
cost low), a stream that keeps the worker busy gets the next batch as soon as this one is done.

>>> clock = [100.0]
>>> pacer = BatchPacer(interval_seconds=0.05, clock=lambda: clock[0])
>>> pacer.wait_seconds()          # nothing ran yet: start at once
0.0
>>> pacer.started(); clock[0] += 0.02
>>> round(pacer.wait_seconds(), 3)  # a short batch: wait out the interval
0.03
>>> clock[0] += 0.08
>>> pacer.wait_seconds()          # a batch longer than the interval: no wait
0.0
>>> pacer.tick_seconds
0.01
"""

from __future__ import annotations

import time
from typing import Callable

TICKS_PER_INTERVAL = 5  # the buffer is looked at 5 times per interval: an idle worker wakes 100 times a second


class BatchPacer:
    """Paces an agent's batches: one starts at most every ``interval_seconds``; ``tick_seconds`` is
    how long faust's ``take`` should gather before handing over what it has."""

    def __init__(self, interval_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_seconds = interval_seconds
        self.tick_seconds = interval_seconds / TICKS_PER_INTERVAL
        self._clock = clock
        self._last_start: float | None = None

    def wait_seconds(self) -> float:
        """How long to wait before the next batch may start."""
        if self._last_start is None:
            return 0.0
        return max(0.0, self._last_start + self.interval_seconds - self._clock())

    def started(self) -> None:
        """A batch starts now."""
        self._last_start = self._clock()
