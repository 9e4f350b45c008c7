"""End to end through a real Kafka broker: moodshift's worker vs the bare model loop vs a naive pipeline.

Measured side by side in one run, on the same generated posts (:mod:`benchmarks.workload`): a
*text* workload (many users, text posts, weather and market context) and an *images* workload (every
post carries a small JPEG or PNG from the media store; ResNet-18 backbone):

(a) **bare** (:mod:`benchmarks.bare_loop`): :class:`pipeline.worker.runtime.WorkerRuntime` ``decode →
    process`` in this process, in batches of ``batch_max_users``, records kept in a dict: no Kafka,
    no faust. The upper bound.
    Measured again with the records encoded and decoded as the worker's table stores them. After
    the worker has stopped, once more with its batches started at the worker's flat rate
    (``bare_paced``): idle between batches, as the worker is at that rate, it costs more CPU per post.
(b) **moodshift**: ``python -m moodshift.pipeline.cli worker`` against the broker; its highest input rate with
    a flat backlog (its per-step records keep pace with the input), then latency at 50% and 80% of
    that rate (see :mod:`benchmarks.through_kafka`);
(c) **naive**: :mod:`benchmarks.naive_app`, one model call per post over the user's whole history
    (text workload only), its highest rate with a flat backlog; its in-process loop is its upper bound.
    A stream's users have history, and a few minutes of benchmark would give them only a few posts:
    every user starts with ``naive_history`` posts, written into the app's table changelog before
    it starts (it recovers them like its own).

The naive app starts with the worker but gets no input, idle, until the worker has been measured and
stopped: each processor is measured alone with the broker and the producer.

Windows are 1 s, sliding by 1 s, with no allowed lateness, and every user posts less often than
once a second, so each post closes exactly one window of its user and the worker emits one
per-step record for it (``emit_step_emotions``). **Latency** is the emit time of that record minus
the event time (= wall clock at sending) of the post that closed the window. It leaves out the wait
for a user's next post, which depends on how often the user posts, not on the system.

After the run, the worker's ``users`` table changelog is read back: bytes per user.
Every process that runs the model uses **one** torch intra-op thread (``TORCH_THREADS``): the 2 cores
are shared by the broker, the producer and the processor, and two threads per model call made the
per-event naive app spin-wait for the cores (it fell to a tenth of its in-process rate).

A broker is started on free ports in a temporary folder unless ``cluster`` settings are given.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import torch

from benchmarks.bare_loop import bare_paced, bare_rate, synthetic_posts
from benchmarks.naive_app import NaivePipeline
from benchmarks.table_topics import topic_bytes, write_table
from benchmarks.lag import LagMeter
from benchmarks.through_kafka import (PacedProducer, Service, end_offsets, max_sustained_rate, percentiles,
                                      step_latencies)
from benchmarks.workload import BACKBONE, LOCATION, SYMBOL, Workload, context_records, write_checkpoint, \
    write_images
from moodshift.connectors import topics
from moodshift.connectors.media import MediaStore
from moodshift.connectors.producer import EventProducer
from moodshift.connectors.topics import ALL_TOPICS, ensure_topics
from moodshift.pipeline.local.net import free_port
from moodshift.pipeline.settings import Settings
from moodshift.pipeline.worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)

TORCH_THREADS = 1


@dataclass(frozen=True)
class Size:
    text_users: int
    text_events: int  # timed in-process posts, after one warm-up post per user
    image_users: int
    image_events: int
    naive_events: int
    naive_history: int  # posts of history every user has when the naive app starts (seeded)
    trial_seconds: float
    image_trial_seconds: float
    max_trials: int
    first_trial: float  # the first trial's rate, as a fraction of the in-process rate
    latency_loads: tuple[float, ...]  # fractions of the max sustained rate
    latency_seconds: float
    drain_timeout: float = 180.0


SIZES = {
    # tiny: the smoke test (one trial each, at a rate the worker surely keeps up with); full: the docs.
    "tiny": Size(text_users=20, text_events=100, image_users=2, image_events=4, naive_events=50, naive_history=5,
                 trial_seconds=4,
                 image_trial_seconds=3, max_trials=1, first_trial=0.25, latency_loads=(0.5,), latency_seconds=2),
    "full": Size(text_users=2_000, text_events=4_000, image_users=30, image_events=60, naive_events=600,
                 naive_history=50, trial_seconds=15, image_trial_seconds=20, max_trials=4, first_trial=1.0,
                 latency_loads=(0.5, 0.8), latency_seconds=15),
}


def run(size: str, cluster: Settings | None = None, logs: Path | None = None) -> dict[str, Any]:
    """Every measurement of one run; ``cluster``: use that broker instead of starting one; ``logs``:
    keep the worker's and the naive app's logs there (default: a temporary folder)."""
    spec = SIZES[size]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="moodshift-e2e-") as tmp, kafka(cluster, Path(tmp)) as base:
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
        settings = benchmark_settings(base, Path(tmp), "bench")
        moodshift = settings.replace(topic_prefix=settings.topic_prefix + "moodshift.", worker_web_port=free_port())
        naive = settings.replace(topic_prefix=settings.topic_prefix + "naive.", worker_web_port=free_port())
        text = Workload("text", spec.text_users)
        images = Workload("images", spec.image_users, tuple(write_images(MediaStore.from_settings(settings), 16)))
        context = context_records(datetime.now(timezone.utc))

        with torch_threads(TORCH_THREADS):
            runtime = WorkerRuntime.from_settings(moodshift)
            for topic, record in context:
                runtime.add_context(moodshift.topic(topic), record.to_json_bytes())
            bare = {"text": bare_rate(runtime, text, spec.text_events),
                    "images": bare_rate(runtime, images, spec.image_events)}
            pipeline = NaivePipeline.from_settings(naive)
            seed = seed_history(pipeline, text, spec.naive_history)
            naive_bare = naive_rate(pipeline, text, spec.naive_events, seed)
            del pipeline
        log.info("in process: moodshift %s, naive %s", bare, naive_bare)
        results: dict[str, Any] = {"size": size, "spec": asdict(spec), "image_backbone": BACKBONE,
                                   "torch_threads": TORCH_THREADS, "bare": bare, "naive_bare": naive_bare}
        results.update(through_the_broker(spec, moodshift, naive, context, text, images, bare, naive_bare, seed,
                                          logs or Path(tmp)))
        with torch_threads(TORCH_THREADS):
            results["bare_paced"] = bare_paced(runtime, {"text": (text, spec.text_events),
                                                         "images": (images, spec.image_events)}, results["moodshift"])
    results["ratios"] = ratios(results)
    results["seconds"] = time.monotonic() - started
    return results


def benchmark_settings(base: Settings, folder: Path, prefix: str) -> Settings:
    """The workers' settings for these workloads: 1 s windows sliding by 1 s, no lateness,
    per-step emotions, the workloads' context, a checkpoint of the method's shapes under ``folder``;
    the rest (the checkpoint interval, batching) the defaults."""
    return base.replace(
        topic_prefix=f"{prefix}-{uuid.uuid4().hex[:8]}.", state_dir=folder / "state",
        model_checkpoint=write_checkpoint(folder / "model.pt"), window_size_seconds=1,
        window_slide_seconds=1, allowed_lateness_seconds=0, emit_step_emotions=True,
        context_location=LOCATION, context_symbol=SYMBOL)


@contextmanager
def kafka(cluster: Settings | None, folder: Path) -> Iterator[Settings]:
    """``cluster``, or a local broker on free ports under ``folder``, stopped at the end."""
    if cluster is not None:
        yield cluster
        return
    from moodshift.pipeline.local.broker import LocalBroker

    broker = LocalBroker(Settings(state_dir=folder / "kafka-state", broker_port=free_port(),
                                  controller_port=free_port()))
    try:
        yield Settings(bootstrap_servers=broker.start(), partitions=broker.settings.partitions)
    finally:
        broker.stop()


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# -- (c) the naive app in process ----------------------------------------------------------------


def seed_history(pipeline: NaivePipeline, workload: Workload, length: int) -> bytes:
    """A history of ``length`` posts (one minute apart, ending now), as the naive app's table keeps it."""
    history = None
    now_ms = time.time_ns() // 1_000_000
    for k in range(length):
        history, _ = pipeline.handle(workload.post(k * workload.users, now_ms - (length - k) * 60_000).to_json_bytes(),
                                     history)
    return history or b"[]"


def naive_rate(pipeline: NaivePipeline, workload: Workload, count: int, seed: bytes) -> dict[str, float]:
    """Posts per second through the naive app's per-event function, every user starting from ``seed``."""
    histories: dict[str, bytes] = {}
    posts = synthetic_posts(workload, 0, count)
    started = time.perf_counter()
    for post in posts:
        histories[post.user_id], _ = pipeline.handle(post.to_json_bytes(), histories.get(post.user_id, seed))
    return {"records_per_s": count / (time.perf_counter() - started)}


# -- (b), (c) through the broker -----------------------------------------------------------------


def through_the_broker(spec: Size, moodshift: Settings, naive: Settings, context: list, text: Workload,
                       images: Workload, bare: dict, naive_bare: dict, seed: bytes, logs: Path) -> dict[str, Any]:
    """Both processors start together; the naive app gets no input, idle, until the moodshift worker
    has been measured and stopped."""
    results: dict[str, Any] = {}
    for settings in (moodshift, naive):
        ensure_topics(settings, ALL_TOPICS)
    write_table(naive, f"{naive.topic('naive')}-history-changelog", {text.user_id(k): seed for k in range(text.users)})
    with Service(["benchmarks.naive_app"], naive, logs / "naive.log", TORCH_THREADS) as naive_worker:
        with EventProducer(moodshift, source="benchmark") as producer, \
                Service(["moodshift.pipeline.cli", "worker"], moodshift, logs / "worker.log", TORCH_THREADS) as worker, \
                LagMeter(moodshift, moodshift.topic("worker")) as meter:
            for topic, record in context:
                producer.send_event(topic, record)
            sources = {"text": PacedProducer(producer, text), "images": PacedProducer(producer, images)}
            for source in sources.values():  # every user's first post, so that every user has state
                source.send(source.workload.users)
            meter.wait_caught_up(spec.drain_timeout, worker)  # the first batch waits for the model, the context
            log.info("the worker is warm")
            seconds = {"text": spec.trial_seconds, "images": spec.image_trial_seconds}
            results["moodshift"] = {
                name: max_rate_and_latency(meter, source, worker, bare[name]["records_per_s"], seconds[name], spec)
                for name, source in sources.items()}
        results["changelog"] = changelog(moodshift, text.users + images.users)

        with EventProducer(naive, source="benchmark") as producer, \
                LagMeter(naive, naive.topic("naive")) as meter:
            source = PacedProducer(producer, text)
            source.send(min(text.users, 100))  # the app is up once it has consumed these
            meter.wait_caught_up(spec.drain_timeout, naive_worker)
            rate, trials = max_sustained_rate(meter, source, spec.first_trial * naive_bare["records_per_s"],
                                              spec.trial_seconds, naive_worker, spec.max_trials, spec.drain_timeout)
    results["naive"] = {"text": {"max_sustained_records_per_s": rate, "trials": [t.to_dict() for t in trials],
                                 "history_at_start": spec.naive_history,
                                 "mean_history_at_end": spec.naive_history + source.next_k / text.users}}
    return results


def max_rate_and_latency(meter: LagMeter, source: PacedProducer, worker: Service, upper_bound: float,
                         seconds: float, spec: Size) -> dict[str, Any]:
    """The max sustained rate, then latency at ``spec.latency_loads`` of it (of the highest consumed
    rate when no trial was flat: the tiny size runs one trial)."""
    rate, trials = max_sustained_rate(meter, source, spec.first_trial * upper_bound, seconds, worker,
                                      spec.max_trials, spec.drain_timeout)
    base = rate or max(t.consumed_rate for t in trials)
    result: dict[str, Any] = {"max_sustained_records_per_s": rate, "trials": [t.to_dict() for t in trials],
                              "latency": {}}
    steps_topic = meter.settings.topic(topics.EMOTION_STEPS)
    for load in spec.latency_loads if base else ():
        start_offsets = end_offsets(meter.settings, steps_topic)
        since_ms = time.time_ns() // 1_000_000
        achieved = source.send(max(1, round(base * load * spec.latency_seconds)), base * load)
        meter.wait_caught_up(spec.drain_timeout, worker)
        latencies = step_latencies(meter.settings, source, start_offsets, since_ms)
        result["latency"][f"{load:.0%}"] = {"input_records_per_s": achieved, **percentiles(latencies)}
        log.info("latency at %.0f%%: %s", load * 100, result["latency"][f"{load:.0%}"])
    return result


def changelog(settings: Settings, users: int) -> dict[str, Any]:
    """The ``users`` table's changelog topic (faust names it ``<app id>-users-changelog``)."""
    sizes = topic_bytes(settings, f"{settings.topic('worker')}-users-changelog")
    return {**sizes, "users": users, "latest_bytes_per_user": sizes["latest_per_key_bytes"] / users,
            "on_disk_bytes_per_user": sizes["on_disk_bytes"] / users}


def ratios(results: dict[str, Any]) -> dict[str, float]:
    text = results["moodshift"]["text"]
    naive = results["naive"]["text"]["max_sustained_records_per_s"]
    fifty = text["latency"].get("50%", {})
    return {
        "moodshift_over_bare_text": text["max_sustained_records_per_s"] / results["bare"]["text"]["records_per_s"],
        "moodshift_over_bare_images": results["moodshift"]["images"]["max_sustained_records_per_s"]
        / results["bare"]["images"]["records_per_s"],
        "moodshift_over_naive_text": text["max_sustained_records_per_s"] / naive if naive else float("inf"),
        "p99_ms_at_50pct_text": fifty.get("p99_ms", float("nan")),
    }


# -- report --------------------------------------------------------------------------------------


def cpu_lines(results: dict[str, Any]) -> list[str]:
    """The worker process's CPU per post in its fastest flat trial, next to the bare loop's."""
    lines = []
    for name, result in results["moodshift"].items():
        flat = [t for t in result["trials"] if t["sustained"]]
        if flat:
            best, bare = max(flat, key=lambda t: t["input_rate"]), results["bare"][name]["cpu_seconds_per_post"]
            paced = results["bare_paced"][name]["cpu_seconds_per_post"]  # run for every workload with a flat trial
            lines.append(f"- {name}: the worker's CPU per post at {best['input_rate']:.1f} posts/s "
                         f"{best['cpu_seconds_per_post'] * 1000:.3f} ms, {best['cpu_seconds_per_post'] / bare:.2f}× "
                         f"the bare loop's ({bare * 1000:.3f} ms; each process's own CPU times), "
                         f"{best['cpu_seconds_per_post'] / paced:.2f}× the bare loop's paced at that rate "
                         f"({paced * 1000:.3f} ms)")
    return lines


def markdown(results: dict[str, Any]) -> str:
    bare, moodshift, naive = results["bare"], results["moodshift"], results["naive"]["text"]
    ratio = results["ratios"]
    lines = [f"Image backbone: {results['image_backbone']} (random weights); torch threads per process: "
             f"{results['torch_threads']}.", "",
             "### End to end through the broker (posts/s)", "",
             "| workload | bare loop in process (with records serialised) | moodshift worker, max flat-backlog rate | moodshift / bare "
             "| naive app, max flat-backlog rate | naive in process | moodshift / naive |",
             "|---|---|---|---|---|---|---|",
             f"| text | {bare['text']['records_per_s']:.0f} ({bare['text']['records_per_s_with_records_serialised']:.0f}) "
             f"| {moodshift['text']['max_sustained_records_per_s']:.0f} "
             f"| {ratio['moodshift_over_bare_text']:.2f} | {naive['max_sustained_records_per_s']:.0f} "
             f"| {results['naive_bare']['records_per_s']:.0f} | {ratio['moodshift_over_naive_text']:.1f}× |",
             f"| images | {bare['images']['records_per_s']:.1f} "
             f"({bare['images']['records_per_s_with_records_serialised']:.1f}) "
             f"| {moodshift['images']['max_sustained_records_per_s']:.1f} | {ratio['moodshift_over_bare_images']:.2f} "
             "| – | – | – |", "", *cpu_lines(results),
             "", "### Latency: the closing post's event time → its window's per-step record emitted", "",
             "| workload | load | input posts/s | steps | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
    for name, result in moodshift.items():
        lines += [f"| {name} | {load} | {row['input_records_per_s']:.1f} | {row['count']} | {row['p50_ms']:.0f} "
                  f"| {row['p95_ms']:.0f} | {row['p99_ms']:.0f} |" for load, row in result["latency"].items()]
    lines += ["", "### Rate search (each trial: a fixed input rate; flat = the backlog of posts without their "
              "per-step record grew by ≤ 5% of the input)", "",
              "| processor | workload | target posts/s | input posts/s | per-step records/s | max backlog growth | flat "
              "| CPU ms per post | machine CPU ms per post (of it the producer's) |", "|---|---|---|---|---|---|---|---|---|"]
    for processor, workload, trials in [*(("moodshift", n, r["trials"]) for n, r in moodshift.items()),
                                        ("naive", "text", naive["trials"])]:
        lines += [f"| {processor} | {workload} | {t['target_rate']:.1f} | {t['input_rate']:.1f} "
                  f"| {t['consumed_rate']:.1f} | {t['max_lag']} | {'yes' if t['sustained'] else 'no'} "
                  f"| {t['cpu_seconds_per_post'] * 1000:.3f} | {t['machine_cpu_seconds_per_post'] * 1000:.3f} "
                  f"({t['producer_cpu_seconds_per_post'] * 1000:.3f}) |" for t in trials]
    log_ = results["changelog"]
    lines += ["", "### The `users` table's changelog after the run", "",
              f"- {log_['records']:,} records for {log_['users']:,} users; the latest record per user (what "
              f"compaction keeps): {log_['latest_bytes_per_user']:,.0f} bytes/user",
              f"- on the broker's disk, not compacted yet: {log_['on_disk_bytes'] / 2**20:,.1f} MiB "
              f"({log_['on_disk_bytes_per_user']:,.0f} bytes/user)",
              f"- the naive app's users had {naive['history_at_start']} posts of history at its start (seeded), "
              f"{naive['mean_history_at_end']:.1f} on average at the end"]
    return "\n".join(lines) + "\n"
