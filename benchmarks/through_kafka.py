"""Measuring a stream processor through a real broker: paced input, consumer lag, outputs' latency.

- :class:`Service` runs a processor (the moodshift worker, the naive app) as a subprocess configured
  by ``MOODSHIFT_*`` variables, and always stops it;
- :class:`benchmarks.lag.LagMeter` samples the consumer lag and the outputs emitted (its docstring:
  why outputs, not commits, measure progress);
- :class:`PacedProducer` sends posts at a fixed rate, in 20 ms ticks, with ``event_time`` = the
  wall clock at sending, and remembers each user's event times;
- :func:`trial` produces at a rate for some seconds and judges whether the backlog stayed flat: over
  the trial's last two thirds it may grow by at most 5% of what was produced meanwhile (i.e. the
  processor emitted ≥ 95% of the input rate), and measures the processor's CPU seconds per post (its
  own CPU times, until every post of the trial was processed) and, over the same span, the whole
  machine's and this process's (the producer's): what the trial cost beside the processor (the
  broker, the producer) on the same cores; between trials the group must have committed everything;
- :func:`max_sustained_rate` searches between the flat and the failed rates (:func:`next_rate`),
  guessing from what failed trials consumed;
- :func:`metric_total`: a counter of a processor's ``/metrics`` page, summed over its labels;
- :func:`machine_cpu_seconds`: the whole machine's busy CPU time, for what else a run costs (the broker);
- :func:`step_latencies`: for each per-step record, its emit time (the record's Kafka timestamp,
  stamped by the worker's producer) minus the event time of the post that closed its window.

A table's changelog topic (its size, filling it before an app starts): :mod:`benchmarks.table_topics`.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import requests
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.lag import LagMeter
from benchmarks.workload import Workload, make_texts
from moodshift.connectors import topics
from moodshift.connectors.producer import EventProducer
from moodshift.pipeline.settings import Settings

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 1.0
MAX_LAG_GROWTH = 0.05  # of the records produced while measuring
TICK_S = 0.02  # finer than the worker's batching (batch_max_wait_ms 200)


# -- processes -----------------------------------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """``MOODSHIFT_*`` variables for every setting that differs from its default."""
    defaults = Settings()
    return {f"MOODSHIFT_{f.name.upper()}": str(getattr(settings, f.name)) for f in fields(Settings)
            if getattr(settings, f.name) != getattr(defaults, f.name)}


def machine_cpu_seconds() -> float:
    """CPU seconds this machine's cores have been busy since boot, all processes (``/proc/stat``:
    user, nice, system, irq and softirq time; not idle, I/O wait, nor time the hypervisor stole).

    >>> machine_cpu_seconds() > 0
    True
    """
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class Service:
    """``python -m <module_args>`` with exactly these settings (``MOODSHIFT_*`` variables, nothing
    inherited) and ``torch_threads`` intra-op threads; :meth:`stop` (also on leaving the ``with``)
    sends SIGTERM, then SIGKILL."""

    def __init__(self, module_args: list[str], settings: Settings, log_path: Path, torch_threads: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSHIFT_")}
        env.update(settings_env(settings), BROKER_COMMIT_INTERVAL=str(COMMIT_INTERVAL_S),
                   OMP_NUM_THREADS=str(torch_threads))
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", *module_args], env=env, stdout=log,
                                            stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float:
        """The process's user plus system CPU seconds so far, all its threads (from /proc)."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- input ---------------------------------------------------------------------------------------


@dataclass
class PacedProducer:
    """Sends a workload's posts at fixed rates, numbering them on from ``next_k``."""

    producer: EventProducer
    workload: Workload
    next_k: int = 0
    sent_ms: dict[str, list[int]] = field(default_factory=dict)  # user → event times, ascending

    def send(self, count: int, rate: float | None = None) -> float:
        """Send ``count`` posts, ``rate`` per second (None: as fast as possible); the rate achieved.

        Each tick (:func:`paced_ticks`) makes the posts due by then, stamped with the tick's time,
        and hands them to the client together. Sending each post at its own moment cost this process
        1.3-1.4 ms of CPU per post at 300 posts/s (kafka-python sends a request per wake-up), ticks
        0.9: on 2 cores the harness took the cores it measures the worker on. For the same reason the
        posts' texts are drawn before the clock starts (:func:`benchmarks.workload.make_texts`).
        """
        make_texts(self.next_k, count)
        started = time.monotonic()
        for due, now_ms in paced_ticks(count, rate):
            for _ in range(due):
                post = self.workload.post(self.next_k, now_ms)
                self.producer.send_event(topics.POSTS, post)
                self.sent_ms.setdefault(post.user_id, []).append(now_ms)
                self.next_k += 1
        self.producer.flush()
        return count / max(time.monotonic() - started, 1e-9)

    def closing_event_ms(self, user_id: str, window_end_ms: int) -> int | None:
        """The event time of the user's first post at or after ``window_end_ms``: with no allowed
        lateness, that post moved the user's watermark past the window end and closed it."""
        times = self.sent_ms.get(user_id, [])
        i = bisect.bisect_left(times, window_end_ms)
        return times[i] if i < len(times) else None


def paced_ticks(count: int, rate: float | None) -> Iterator[tuple[int, int]]:
    """For sending ``count`` items at ``rate`` per second (None: all at once): at every tick of
    :data:`TICK_S`, waited for here, how many items are due since the last tick, and the tick's wall
    clock (ms)."""
    started = time.monotonic()
    sent = 0
    while sent < count:
        due = count
        if rate is not None:
            delay = started + math.ceil(sent / rate / TICK_S) * TICK_S - time.monotonic()
            if delay > 0:  # read the clock once: read twice, the sleep could come out negative (it did)
                time.sleep(delay)
            due = min(count, int((time.monotonic() - started) * rate) + 1)
        yield due - sent, time.time_ns() // 1_000_000
        sent = due


# -- throughput ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    target_rate: float
    input_rate: float  # what the producer achieved
    consumed_rate: float  # per-step records emitted per second over the measured span
    max_lag: int  # the largest backlog over the measured span, less the backlog at its start
    sustained: bool
    cpu_seconds_per_post: float  # the processor's CPU, from the trial's start until its posts were processed
    # Over the same span: every core's busy time (/proc/stat), and of it this process's (the producer, the lag meter).
    machine_cpu_seconds_per_post: float = 0.0
    producer_cpu_seconds_per_post: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def trial(meter: LagMeter, source: PacedProducer, rate: float, seconds: float,
          service: Service, drain_timeout: float) -> Trial:
    """Produce at ``rate`` for ``seconds`` and judge the lag (see the module docstring)."""
    meter.wait_caught_up(drain_timeout, service)
    started, cpu_started, posts = time.monotonic(), service.cpu_seconds(), max(1, round(rate * seconds))
    machine_started, producer_started = machine_cpu_seconds(), time.process_time()
    achieved = source.send(posts, rate)
    ended = time.monotonic()
    at_start = meter.between(started, ended)
    samples = meter.between(started + (ended - started) / 3, ended)
    if len(samples) >= 2 and samples[-1].t > samples[0].t:
        first, last = samples[0], samples[-1]
        produced = last.end - first.end
        consumed_rate = (last.emitted - first.emitted) / (last.t - first.t)
        sustained = last.backlog - first.backlog <= MAX_LAG_GROWTH * max(produced, 1)
        max_lag = max(s.backlog for s in samples) - at_start[0].backlog
    else:  # fewer than two samples: nothing to judge by, so not sustained
        consumed_rate, sustained, max_lag = 0.0, False, 0
    meter.wait_caught_up(drain_timeout, service)  # every post of the trial processed, its CPU counted
    result = Trial(rate, achieved, consumed_rate, max_lag, sustained, (service.cpu_seconds() - cpu_started) / posts,
                   (machine_cpu_seconds() - machine_started) / posts, (time.process_time() - producer_started) / posts)
    log.info("%s: %s", meter.group_id, result)
    return result


def max_sustained_rate(meter: LagMeter, source: PacedProducer, first_rate: float, seconds: float,
                       service: Service, max_trials: int, drain_timeout: float) -> tuple[float, list[Trial]]:
    """The highest input rate (records/s) a trial kept flat, and every trial run (0 if none was):
    trials at the rates :func:`next_rate` picks, at most ``max_trials``."""
    trials: list[Trial] = []
    rate: float | None = first_rate
    while rate is not None and len(trials) < max_trials:
        trials.append(trial(meter, source, rate, seconds, service, drain_timeout))
        rate = next_rate(trials)
    meter.wait_caught_up(drain_timeout, service)
    return flat_rate(trials), trials


def flat_rate(trials: list[Trial]) -> float:
    """The highest input rate a trial kept flat (0 if none did)."""
    return max((t.input_rate for t in trials if t.sustained), default=0.0)


def next_rate(trials: list[Trial]) -> float | None:
    """The next trial's rate, or None once the flat and the failed rates are within 15%.

    The flat rates found so far bound the answer from below, the failed ones from above. With no
    failure yet, 1.5× higher. Else a guess: a trial offered up to twice what it consumed ran
    saturated, at about the processor's capacity, so 95% of what it consumed; of such guesses inside
    the bounds, the highest (capacity moves with the machine's load: a trial can fail at a rate
    below what an earlier one consumed). A trial offered more than that says little: with the
    producer on the same cores, a worker offered 2.6 times its flat rate consumed half of it, and
    one offered 14 times, a fifth (docs/benchmarks.md), and a guess from that threw the search far
    below. Without a guess inside the bounds, the geometric middle of the upper bound and the best
    rate seen below it (flat, or consumed by any trial; the two can be an order of magnitude apart).

    >>> next_rate([Trial(1500, 1500, 1000, 9000, False, 0.3)])  # saturated: 95% of what it consumed
    950.0
    >>> round(next_rate([Trial(5000, 5000, 1000, 50000, False, 0.3)]))  # overloaded: the middle of 950 and 5000
    2179
    >>> next_rate([Trial(1741, 1738, 1428, 4983, False, 0.6), Trial(1357, 1356, 1240, 1811, False, 0.7)])
    1178.0
    >>> next_rate([Trial(1000, 1000, 1000, 10, True, 0.6), Trial(1100, 1100, 1040, 900, False, 0.5)])  # within 15%
    """
    flat = flat_rate(trials)
    failed = [t for t in trials if not t.sustained]
    if not failed:
        return 1.5 * trials[-1].target_rate
    upper = min(t.target_rate for t in failed)
    if flat and upper / flat <= 1.15:
        return None
    guesses = [0.95 * t.consumed_rate for t in failed if 2 * t.consumed_rate >= t.target_rate]
    inside = [guess for guess in guesses if flat * 1.05 < guess < upper * 0.95]
    if inside:
        return max(inside)
    seen = [flat] + [0.95 * t.consumed_rate for t in failed]
    best_seen = max((rate for rate in seen if rate < upper * 0.95), default=0.0)
    return math.sqrt(best_seen * upper) if best_seen else upper / 2


# -- latency -------------------------------------------------------------------------------------


def step_latencies(settings: Settings, source: PacedProducer, start_offsets: dict[TopicPartition, int],
                   since_ms: int) -> list[float]:
    """Milliseconds from the closing post's event time to each per-step record's emit time, for
    the steps on ``emotion-steps`` after ``start_offsets`` whose closing post came at ``since_ms`` or later."""
    consumer = KafkaConsumer(**settings.kafka_python_config(), enable_auto_commit=False)
    try:
        partitions = list(start_offsets)
        consumer.assign(partitions)
        for tp, offset in start_offsets.items():
            consumer.seek(tp, offset)
        end = consumer.end_offsets(partitions)
        latencies = []
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    step = json.loads(record.value)
                    window_end_ms = int(datetime.fromisoformat(step["window_end"]).timestamp() * 1000)
                    closed_by = source.closing_event_ms(step["user_id"], window_end_ms)
                    if closed_by is not None and closed_by >= since_ms:
                        latencies.append(float(record.timestamp - closed_by))
        return latencies
    finally:
        consumer.close()


def metric_total(port: int, family: str) -> float:
    """The counter ``family`` (e.g. ``moodshift_window_steps``) on the ``/metrics`` page at ``port``,
    summed over its labels; 0 if absent."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(sample.value for metric in text_string_to_metric_families(text) if metric.name == family
               for sample in metric.samples if sample.name == f"{family}_total")


def end_offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(**settings.kafka_python_config())
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return consumer.end_offsets(partitions)
    finally:
        consumer.close()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"count": len(values), "p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}
