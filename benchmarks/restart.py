"""How long a worker takes to restart with many users in state, per table store.

``python -m benchmarks.restart --users 100000 [--set state_dtype=float16]`` writes one record per
user into the ``users`` changelog of a fresh local broker (records of the real format and size:
a user's open window and the model state of the method's shapes, the state's values random), then
starts the worker several times, each time with a few posts waiting on the input topic, and times
**from the process's start until the group has committed those posts**: the worker has read what
its store lacks from the changelog, processed the posts and checkpointed them. Per store:

- ``memory``: every start re-reads the whole changelog;
- ``rocksdb``: the first start fills the local RocksDB from the whole changelog; a restart reads
  only what the local store has not seen.

Each store is started three times: first, after a SIGTERM, after a ``kill -9`` (``STOPS``).

It also reports the worker's resident memory (VmRSS) once caught up, and the size of its state
directory. Both stores run against the same changelog, one after the other, in one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmarks.bare_loop import POST_PERIOD_MS, synthetic_posts
from benchmarks.e2e import TORCH_THREADS, benchmark_settings, kafka, torch_threads
from benchmarks.table_topics import write_table
from benchmarks.lag import LagMeter
from benchmarks.through_kafka import Service, metric_total
from benchmarks.workload import Workload, context_records
from moodshift.connectors import topics
from moodshift.connectors.producer import EventProducer
from moodshift.connectors.topics import ALL_TOPICS, ensure_topics
from moodshift.pipeline.cli import parse_set
from moodshift.pipeline.local.net import free_port
from moodshift.models.state import UserStates
from moodshift.pipeline.stream.records import UserRecord
from moodshift.pipeline.settings import Settings
from moodshift.pipeline.worker.runtime import WorkerRuntime

WAITING_POSTS = 200  # posts on the input topic at each start (users 0..199, every partition)
# How each start ends; the next start comes after it. After a SIGKILL the group waits for the killed
# member's session to time out (worker_session_timeout_seconds) before the new worker gets partitions.
STOPS = ("SIGTERM", "SIGKILL", "SIGTERM")


def user_records(settings: Settings, workload: Workload, seed: int = 0) -> dict[str, bytes]:
    """One record per user of ``workload``: a real record (one post applied) whose model state is
    replaced by random values of the same dtype and size, whose applied offsets are dropped (the
    benchmark's input topic starts empty), and which names its own user (its windows and detector
    carry the user id). Its posts are an hour old, so the posts waiting at each start are never late."""
    runtime = WorkerRuntime.from_settings(settings)
    for topic, record in context_records(datetime.now(timezone.utc)):
        runtime.add_context(settings.topic(topic), record.to_json_bytes())
    hour_ago_ms = time.time_ns() // 1_000_000 - 3_600_000
    posts = [Workload("text", 1).post(k, hour_ago_ms + k * POST_PERIOD_MS) for k in range(3)]  # each closes a window
    events, _ = runtime.decode([(settings.topic(topics.POSTS), p.user_id.encode(), p.to_json_bytes()) for p in posts])
    user = posts[0].user_id
    template = UserRecord.from_bytes(runtime.process(events, {user: None}, 0).records[user].to_bytes())
    template.applied = {}
    state = UserStates.from_bytes(template.model)
    generator = torch.Generator().manual_seed(seed)
    records = {}
    for k in range(workload.users):
        user = workload.user_id(k)
        random_state = dataclasses.replace(state, **{name: torch.randn(getattr(state, name).shape, generator=generator) * 0.5
                                                     for name in ("feature_h", "feature_c", "context_h", "context_c")})
        records[user] = dataclasses.replace(
            template, model=random_state.to_bytes(settings.state_dtype),
            windows={**template.windows, "user_id": user},
            detector=template.detector and {**template.detector, "user_id": user}).to_bytes()
    return records


def start_and_catch_up(settings: Settings, workload: Workload, first_k: int, log_path: Path,
                       timeout: float) -> tuple[Service, dict[str, float]]:
    """Send ``WAITING_POSTS`` posts, start the worker, wait until they are committed; the worker
    keeps running (the caller stops it)."""
    with EventProducer(settings, source="benchmark") as producer:
        for post in synthetic_posts(workload, first_k, WAITING_POSTS):
            producer.send_event(topics.POSTS, post)
    started = time.monotonic()
    worker = Service(["moodshift.pipeline.cli", "worker"], settings, log_path, TORCH_THREADS)
    try:
        with LagMeter(settings, settings.topic("worker")) as meter:
            meter.wait_caught_up(timeout, worker)
    except BaseException:
        worker.stop()
        raise
    seconds = time.monotonic() - started
    return worker, {"seconds": seconds, "rss_bytes": _rss_bytes(worker.process.pid),
                    "state_dir_bytes": _folder_bytes(settings.state_dir / "worker"),
                    **_worker_counts(settings.worker_web_port)}


def _worker_counts(port: int) -> dict[str, float]:
    """Window steps and dead letters so far, from the worker's /metrics: a start whose posts became
    dead letters measured nothing."""
    return {"window_steps": metric_total(port, "moodshift_window_steps"),
            "dead_letters": metric_total(port, "moodshift_dead_letters")}


def run(users: int, overrides: dict[str, str] | None = None, cluster: Settings | None = None,
        timeout: float = 1200) -> dict[str, Any]:
    results: dict[str, Any] = {"users": users}
    with tempfile.TemporaryDirectory(prefix="moodshift-restart-") as tmp, kafka(cluster, Path(tmp)) as base:
        folder = Path(tmp)
        settings = benchmark_settings(base, folder, "restart").replace_text(overrides or {})
        ensure_topics(settings, ALL_TOPICS)
        with EventProducer(settings, source="benchmark") as producer:
            for topic, record in context_records(datetime.now(timezone.utc)):
                producer.send_event(topic, record)
        workload = Workload("text", users)
        with torch_threads(TORCH_THREADS):
            rows = user_records(settings, workload)
        results["record_bytes"] = sum(map(len, rows.values())) / len(rows)
        written = time.monotonic()
        write_table(settings, f"{settings.topic('worker')}-users-changelog", rows)
        results["changelog_write_seconds"] = time.monotonic() - written
        del rows
        next_k = 0
        for store in ("memory", "rocksdb"):
            store_settings = settings.replace(table_store=store, state_dir=folder / f"state-{store}",
                                              worker_web_port=free_port())
            runs = []
            for i, stop in enumerate(STOPS):
                worker, measured = start_and_catch_up(store_settings, workload, next_k,
                                                      folder / f"worker-{store}-{i}.log", timeout)
                next_k += WAITING_POSTS
                if stop == "SIGKILL":
                    worker.process.send_signal(signal.SIGKILL)
                    worker.process.wait()
                else:
                    worker.stop()
                runs.append({"start": i + 1, "after": "first start" if i == 0 else STOPS[i - 1], **measured})
                print(json.dumps({"store": store, **runs[-1]}), flush=True)
            results[store] = runs
    return results


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a worker setting, e.g. state_dtype=float16")
    args = parser.parse_args()
    print(json.dumps(run(args.users, parse_set(args.set))))


if __name__ == "__main__":
    main()
