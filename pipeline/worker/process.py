"""How a worker tunes its Python process: the garbage collector's thresholds and torch's threads.

Both are process-wide, so the worker sets them once at start (``moodshift worker``); the
benchmarks' bare loop sets the same, so that it measures the code and not these settings.
"""

from __future__ import annotations

import gc

import torch

#: Python's garbage collector thresholds for a worker (Python's defaults: 700, 10, 10). A worker
#: keeps every changed user's record and every event since the last checkpoint alive for seconds:
#: with the defaults they survive into the oldest generation, and full collections over that heap
#: took 23 of a busy worker's 69 CPU seconds (a 100,000-post drain, docs/benchmarks.md, "The
#: garbage collector"). Rarer young collections let most of them die first; cycles are still
#: collected, later.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """Set :data:`GC_THRESHOLDS` for this process.

    >>> previous = gc.get_threshold()
    >>> tune_garbage_collector(); gc.get_threshold()
    (50000, 20, 100)
    >>> gc.set_threshold(*previous)
    """
    gc.set_threshold(*GC_THRESHOLDS)


def limit_torch_threads(count: int) -> None:
    """Run torch's operators on ``count`` threads (setting ``torch_threads``); 0 leaves torch's
    default, one per core. Threads that start later (the worker's model thread) get it too.

    Why few: a worker's model steps are small matrix products, one batch every few tens of
    milliseconds, and between them torch's OpenMP threads spin-wait for the next. On 2 cores at
    1,000 posts/s the bare loop took 0.58 ms of CPU per post with 2 threads, 0.32 with 1, at
    the same rate (docs/benchmarks.md, "Torch threads").

    >>> previous = torch.get_num_threads()
    >>> limit_torch_threads(1); torch.get_num_threads()
    1
    >>> limit_torch_threads(0); torch.get_num_threads()
    1
    >>> torch.set_num_threads(previous)
    """
    if count > 0:
        torch.set_num_threads(count)
