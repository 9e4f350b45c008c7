"""The bare model loop: the worker's own code in this process, no Kafka, no faust: the benchmarks' reference.

:func:`bare_rate` runs ``WorkerRuntime.decode → process`` over :func:`synthetic_posts` in batches of
``batch_max_users``, the users' records in a dict, back to back or paced (:func:`bare_paced`: its
batches started at the rate a worker was fed, idle in between, as that worker was).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from benchmarks.workload import Workload
from moodshift.connectors import topics
from moodshift.connectors.schemas import Post
from moodshift.pipeline.stream.records import UserRecord
from moodshift.pipeline.worker.process import tune_garbage_collector
from moodshift.pipeline.worker.runtime import WorkerRuntime

POST_PERIOD_MS = 1_500  # in the in-process loops each user posts every 1.5 s of event time


def synthetic_posts(workload: Workload, start_k: int, count: int) -> list[Post]:
    """Posts ``start_k ...`` with event times spaced so that each user posts every 1.5 s."""
    base_ms = time.time_ns() // 1_000_000
    return [workload.post(k, base_ms + k * POST_PERIOD_MS // workload.users) for k in range(start_k, start_k + count)]


def bare_rate(runtime: WorkerRuntime, workload: Workload, count: int, rate: float | None = None) -> dict[str, float]:
    """Posts per second through ``WorkerRuntime.decode → process`` after one warm-up post per user,
    with the users' records kept as dicts; then, on the next ``count`` posts, with the records
    encoded and decoded as the worker's table stores them (:mod:`pipeline.stream.records`).

    ``rate``: start the timed batches at that many posts per second, idle in between, as a worker
    fed at that rate gets them (its CPU per post then counts what idling costs: caches that other
    processes used meanwhile); None: one after another."""
    settings = runtime.settings
    posts = synthetic_posts(workload, 0, workload.users + 2 * count)
    raw = [(settings.topic(topics.POSTS), post.user_id.encode(), post.to_json_bytes()) for post in posts]
    records: dict[str, Any] = {}

    def process(chunk: list[tuple], serialised: bool, pace: float | None = rate) -> tuple[float, float]:
        """Wall and CPU seconds (this process, all threads) to process ``chunk`` in batches of
        ``batch_max_users``, started ``pace`` posts per second apart."""
        load, store = (UserRecord.from_bytes, UserRecord.to_bytes) if serialised else (lambda r: r, lambda r: r)
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in range(0, len(chunk), settings.batch_max_users):
            if pace is not None:
                time.sleep(max(0.0, started + i / pace - time.perf_counter()))
            events, _ = runtime.decode(chunk[i:i + settings.batch_max_users])
            stored = {user: records.get(user) for user in runtime.user_ids(events)}
            outputs = runtime.process(events, {user: None if r is None else load(r) for user, r in stored.items()}, 0)
            records.update((user, store(record)) for user, record in outputs.records.items())
        return time.perf_counter() - started, time.process_time() - cpu_started

    previous = gc.get_threshold()
    tune_garbage_collector()  # as in the worker: the ratio compares the code, not the collector's settings
    try:
        process(raw[:workload.users], serialised=False, pace=None)
        plain, plain_cpu = process(raw[workload.users:workload.users + count], serialised=False)
        records = {user: record.to_bytes() for user, record in records.items()}
        serialised, serialised_cpu = process(raw[workload.users + count:], serialised=True)
    finally:
        gc.set_threshold(*previous)
    # CPU seconds per post: it depends far less than the rates on what else shares the cores, but it
    # does (docs/benchmarks.md, "Where a paced worker's CPU goes").
    return {"records_per_s": count / plain, "records_per_s_with_records_serialised": count / serialised,
            "cpu_seconds_per_post": plain_cpu / count,
            "cpu_seconds_per_post_with_records_serialised": serialised_cpu / count}


def bare_paced(runtime: WorkerRuntime, workloads: dict[str, tuple[Workload, int]],
               moodshift: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The bare loop once more, after the worker has stopped, its batches started at the rate of
    the worker's fastest flat trial of each workload (as a worker fed at that rate gets them):
    the like-for-like reference for the worker's CPU per post at that rate (docs/benchmarks.md,
    "Where a paced worker's CPU goes"). ``workloads``: name → (workload, timed posts)."""
    paced = {}
    for name, (workload, count) in workloads.items():
        flat = [t["input_rate"] for t in moodshift[name]["trials"] if t["sustained"]]
        if flat:
            paced[name] = {"rate": max(flat), **bare_rate(runtime, workload, count, max(flat))}
    return paced
