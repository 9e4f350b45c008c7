"""A worker draining a backlog: posts/s from the first post sent to the last post's output.

The quick way to compare two versions of the worker (a minute each; alternate them, the machine
is noisy): ``python -m benchmarks.drain --posts 20000``. The text workload of :mod:`benchmarks.e2e`
(2,000 users, weather and market context, 1 s windows, per-step emotions on). After one warm-up
post per user, the posts are sent as fast as the producer goes while the worker consumes them, so
both share the cores as in a deployment on one machine; the rate is posts over the seconds from
the first send until the worker has emitted a per-step record for each of them. Until 2026-12-06
(sixth session) the clock ran until the group's committed offsets reached the end, and the posts
were made after it started: the worker commits at checkpoints (every 10 s), so the rate measured
which checkpoint came after the last post, and every version of the worker drained at 1,377-1,419
posts/s while it took 11.6 s for 30,000 posts (2,591 posts/s; docs/benchmarks.md). The posts are the bare loop's
(:func:`benchmarks.bare_loop.synthetic_posts`: each user posts every 1.5 s of event time, so each post
closes its user's last window, one model step per post) whatever the send rate: until 2026-12-06
they were sent in one tick and carried one event time, a user's posts shared a window, and the
worker made 0.02 model steps per post against the bare loop's one (docs/benchmarks.md).

Besides the rate it reports, for the drained posts only: the model steps per post (per-step records
the worker emitted; each user's last window stays open), the bytes the worker wrote to its ``users``
changelog per post (all records, as on the broker before compaction: the records' key and value
bytes, and what their batches take on the broker's disk, compressed as the topic says), and the worker process's CPU
seconds per post (its own CPU times, so a figure that moves far less than a rate with what else
shares the cores, though it does move: docs/benchmarks.md, "Where a paced worker's CPU goes"; until the offsets are committed, so the last checkpoint counts, and the idle wait for it
too; ``..._until_outputs``: until the last output), and of it the model thread's (``moodshift_model_thread_cpu_seconds_total``: the rest is
Kafka, faust and the event loop), next to the bare loop's (:func:`benchmarks.bare_loop.bare_rate`, in
this process, on the same workload). The bare loop runs before the worker starts and again after
it stopped, and the ratios are to the mean of both: on these machines the same bare loop measured
0.27 and 0.45 ms per post a few minutes apart, so a single measurement before the worker made the
ratio swing as much.

``rate``: send the posts at that many per second instead (in :func:`benchmarks.through_kafka.paced_ticks`):
the worker's CPU per post at a load it keeps up with, in smaller batches than a backlog's, as in
the end-to-end benchmark's trials. The bare loop then also runs paced (``bare_paced_...``: its
batches started at that rate, idle in between, before the worker starts), which costs it more CPU
per post than back to back.

What the posts cost the whole machine, from the first send to the last output: ``machine_...``
(every core's busy time, ``/proc/stat``), of it ``producer_...`` (this process: the producer, the
lag meter) and the worker's; ``others_...`` is the rest (the broker, and whatever else runs).

``py_spy``: a path to record a profile of the worker (``py-spy record --format raw``, 25 s), for
a py-spy installed on the PATH; it is not a dependency of the project.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.bare_loop import bare_rate, synthetic_posts
from benchmarks.e2e import TORCH_THREADS, benchmark_settings, kafka, torch_threads
from benchmarks.table_topics import topic_bytes
from benchmarks.lag import LagMeter
from benchmarks.through_kafka import (PacedProducer, Service, end_offsets, machine_cpu_seconds, metric_total,
                                      paced_ticks)
from benchmarks.workload import Workload, context_records
from moodshift.connectors import topics
from moodshift.connectors.producer import EventProducer
from moodshift.connectors.topics import ALL_TOPICS, ensure_topics
from moodshift.pipeline.cli import parse_set
from moodshift.pipeline.local.net import free_port
from moodshift.pipeline.settings import Settings
from moodshift.pipeline.worker.runtime import WorkerRuntime

MODEL_THREAD_CPU = "moodshift_model_thread_cpu_seconds"


def run(posts: int, users: int = 2_000, cluster: Settings | None = None, py_spy: Path | None = None,
        timeout: float = 600, overrides: dict[str, str] | None = None, rate: float | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="moodshift-drain-") as tmp, kafka(cluster, Path(tmp)) as base:
        settings = benchmark_settings(base, Path(tmp), "drain").replace(worker_web_port=free_port())
        settings = settings.replace_text(overrides or {})
        ensure_topics(settings, ALL_TOPICS)
        text = Workload("text", users)
        context = context_records(datetime.now(timezone.utc))
        with torch_threads(TORCH_THREADS):
            runtime = WorkerRuntime.from_settings(settings)
            for topic, record in context:
                runtime.add_context(settings.topic(topic), record.to_json_bytes())
            bare_before = bare_rate(runtime, text, min(posts, 10_000))
            bare_at_rate = bare_rate(runtime, text, min(posts, 10_000), rate) if rate else None
        changelog = f"{settings.topic('worker')}-users-changelog"
        with EventProducer(settings, source="benchmark") as producer, \
                Service(["moodshift.pipeline.cli", "worker"], settings, Path(tmp) / "worker.log", TORCH_THREADS) as worker, \
                LagMeter(settings, settings.topic("worker")) as meter:
            for topic, record in context:
                producer.send_event(topic, record)
            source = PacedProducer(producer, text)
            source.send(text.users)  # every user has state, the model is loaded, the context is read
            meter.wait_caught_up(timeout, worker)
            before, steps_before = topic_bytes(settings, changelog), _records(settings, topics.EMOTION_STEPS)
            backlog = synthetic_posts(text, text.users, posts)  # made before the clock starts (2-3 s)
            profiler = _profile(py_spy, worker.process.pid) if py_spy else None
            started, cpu_started = time.monotonic(), worker.cpu_seconds()
            machine_cpu_started, own_cpu_started = machine_cpu_seconds(), time.process_time()
            model_cpu_started = metric_total(settings.worker_web_port, MODEL_THREAD_CPU)
            posts_due = iter(backlog)
            for due, _ in paced_ticks(posts, rate):
                for post in itertools.islice(posts_due, due):
                    producer.send_event(topics.POSTS, post)
            producer.flush()
            # Each post closes its user's window (a --set that makes posts share windows ends at the commit).
            clock_stopped_at = meter.wait_emitted(steps_before + posts, timeout, worker)
            seconds, cpu_at_outputs = time.monotonic() - started, worker.cpu_seconds() - cpu_started
            machine_cpu, own_cpu = machine_cpu_seconds() - machine_cpu_started, time.process_time() - own_cpu_started
            meter.wait_caught_up(timeout, worker)
            cpu = worker.cpu_seconds() - cpu_started
            model_cpu = metric_total(settings.worker_web_port, MODEL_THREAD_CPU) - model_cpu_started
            if profiler is not None:
                profiler.wait()
            after, steps = topic_bytes(settings, changelog), _records(settings, topics.EMOTION_STEPS) - steps_before
            written = after["all_records_bytes"] - before["all_records_bytes"]
            on_disk = after["on_disk_bytes"] - before["on_disk_bytes"]
        with torch_threads(TORCH_THREADS):  # the worker has stopped: the machine as the first time
            bare_after = bare_rate(runtime, text, min(posts, 10_000))
    bare = (bare_before["cpu_seconds_per_post"] + bare_after["cpu_seconds_per_post"]) / 2
    return {"posts": posts, "users": users, "send_rate": rate, "checkpoint_interval_seconds": settings.checkpoint_interval_seconds,
            "state_dtype": settings.state_dtype, "table_store": settings.table_store,
            "seconds": seconds, "posts_per_s": posts / seconds, "clock_stopped_at": clock_stopped_at, "worker_steps_per_post": steps / posts,
            "changelog_compression": settings.changelog_compression,
            "changelog_bytes_per_post": written / posts, "changelog_disk_bytes_per_post": on_disk / posts,
            "worker_cpu_seconds_per_post": cpu / posts,
            "worker_cpu_seconds_per_post_until_outputs": cpu_at_outputs / posts,
            "worker_model_thread_cpu_seconds_per_post": model_cpu / posts,
            "bare_cpu_seconds_per_post": bare,
            "bare_cpu_seconds_per_post_before_and_after": [bare_before["cpu_seconds_per_post"],
                                                           bare_after["cpu_seconds_per_post"]],
            "worker_cpu_per_post_over_bare": cpu / posts / bare,
            "worker_model_thread_cpu_per_post_over_bare": model_cpu / posts / bare,
            "bare_posts_per_s": bare_before["records_per_s"],
            **({} if bare_at_rate is None else {
                "bare_paced_cpu_seconds_per_post": bare_at_rate["cpu_seconds_per_post"],
                "worker_cpu_per_post_over_bare_paced": cpu / posts / bare_at_rate["cpu_seconds_per_post"]}),
            # Until the last output, as worker_cpu_seconds_per_post_until_outputs: what the posts cost the machine.
            "machine_cpu_seconds_per_post": machine_cpu / posts,
            "producer_cpu_seconds_per_post": own_cpu / posts,
            "others_cpu_seconds_per_post": (machine_cpu - own_cpu - cpu_at_outputs) / posts,
            "machine_busy_cores": machine_cpu / seconds}


def _records(settings: Settings, topic: str) -> int:
    """How many records ``topic`` holds (its partitions' end offsets)."""
    return sum(end_offsets(settings, settings.topic(topic)).values())


def _profile(path: Path, pid: int) -> subprocess.Popen:
    executable = shutil.which("py-spy")
    if executable is None:
        raise SystemExit("--py-spy needs py-spy on the PATH (pip install py-spy)")
    return subprocess.Popen([executable, "record", "--format", "raw", "--threads", "--duration", "25",
                             "--output", str(path), "--pid", str(pid)], stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--rate", type=float, help="send the posts at this rate (posts/s), not as fast as possible")
    parser.add_argument("--py-spy", type=Path, help="record a py-spy profile of the worker to this file")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a worker setting, e.g. checkpoint_interval_seconds=10 or state_dtype=float16 "
                        "(default: the benchmarks' settings, with the worker's own checkpoint interval)")
    args = parser.parse_args()
    print(json.dumps(run(args.posts, args.users, py_spy=args.py_spy, overrides=parse_set(args.set),
                         rate=args.rate)))


if __name__ == "__main__":
    main()
