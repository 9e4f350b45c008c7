"""Soak: a worker under steady load for a bounded time, its memory and lag sampled (``make soak``).

Not part of the default run. ``MOODSHIFT_SOAK_SECONDS`` (default 600) sets the length, the load is
``MOODSHIFT_SOAK_RATE`` posts/s (default 50) from a fixed set of users. The run fails if the
worker's resident memory grows by more than ``MOODSHIFT_SOAK_MAX_GROWTH_MIB`` (default 64) from the
end of the warm-up (the first fifth, when every user has arrived) to the end, or if the consumer lag
at the end exceeds ten seconds of input. The samples go to ``<basetemp>/soak.json`` and are printed.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from moodshift.connectors import topics
from moodshift.connectors.producer import EventProducer
from moodshift.connectors.schemas import Post
from moodshift.connectors.topics import ensure_topics
from moodshift.pipeline.local.net import free_port
from moodshift.pipeline.settings import Settings
from tests.pipeline.worker.test_worker_kafka import WORDS, tiny_checkpoint
from tests.pipeline.worker.worker_process import WorkerProcess

pytestmark = [pytest.mark.soak, pytest.mark.kafka]

SECONDS = float(os.environ.get("MOODSHIFT_SOAK_SECONDS", "600"))
RATE = float(os.environ.get("MOODSHIFT_SOAK_RATE", "50"))
MAX_GROWTH_MIB = float(os.environ.get("MOODSHIFT_SOAK_MAX_GROWTH_MIB", "64"))
USERS = 500
WORKER = dict(window_size_seconds=60, window_slide_seconds=10, allowed_lateness_seconds=0, batch_max_wait_ms=100,
              idle_close_seconds=30, context_location="none", emit_step_emotions=True)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def total_lag(exposition: bytes) -> float:
    return sum(float(line.rsplit(b" ", 1)[1]) for line in exposition.splitlines()
               if line.startswith(b"moodshift_consumer_lag_records{"))


def feed(settings: Settings, stop: threading.Event) -> None:
    """Posts at RATE per second from USERS users, event time = now, until ``stop``."""
    rng = np.random.default_rng(5)
    with EventProducer(settings, source="soak") as producer:
        started, sent = time.monotonic(), 0
        while not stop.is_set():
            user = f"user-{rng.integers(USERS)}"
            producer.send_event(topics.POSTS, Post(event_id=f"soak-{sent}", user_id=user,
                                                   event_time=datetime.now(timezone.utc),
                                                   text=" ".join(rng.choice(WORDS, 6)), source="soak"))
            sent += 1
            time.sleep(max(0.0, started + sent / RATE - time.monotonic()))


def test_worker_memory_and_lag_stay_bounded(kafka_settings: Settings, tmp_path: Path,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = kafka_settings.replace(model_checkpoint=tiny_checkpoint(tmp_path / "model.pt"),
                                      worker_web_port=free_port(), **WORKER)
    ensure_topics(settings, topics.ALL_TOPICS)
    worker = WorkerProcess(settings, tmp_path / "worker.log", overrides=("model_checkpoint", "worker_web_port", *WORKER))
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(settings, stop), daemon=True)
    samples: list[dict] = []
    try:
        worker.wait_ready()
        feeder.start()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < SECONDS:
            assert worker.alive(), worker.log_tail()
            samples.append({"seconds": round(elapsed, 1), "rss_mib": round(rss_mib(worker.process.pid), 1),
                            "lag_records": total_lag(worker.get("/metrics"))})
            print(samples[-1], flush=True)
            time.sleep(min(10.0, SECONDS / 30))
    finally:
        stop.set()
        worker.stop()
    (tmp_path_factory.getbasetemp() / "soak.json").write_text(json.dumps(samples, indent=1))
    warm = [s["rss_mib"] for s in samples if s["seconds"] >= SECONDS / 5]
    growth = max(warm[-3:]) - min(warm[:3])
    assert growth <= MAX_GROWTH_MIB, f"RSS grew {growth:.0f} MiB after the warm-up: {samples}"
    assert samples[-1]["lag_records"] <= 10 * RATE, f"the worker fell behind: {samples[-3:]}"
