"""The faust worker end to end through the real broker, checked against the plain-Python runtime.

Context, posts (good, malformed, late) and a video go into the topics; a `moodshift worker`
subprocess runs; its per-step emotions, change points and dead letters must equal what
:class:`WorkerRuntime` computes offline on the same records, and its /health and /metrics answer.
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from moodshift.connectors import topics
from moodshift.connectors.producer import EventProducer
from moodshift.connectors.record import Rejected
from moodshift.connectors.schemas import MarketTick, Post, WeatherObservation
from moodshift.connectors.topics import ensure_topics
from moodshift.models.checkpoint import CheckpointMeta, save_checkpoint
from moodshift.models.config import ModelConfig
from moodshift.models.model import build_model
from moodshift.models.text import build_vocabulary
from moodshift.pipeline.local.net import free_port
from moodshift.pipeline.settings import Settings
from moodshift.pipeline.worker.runtime import WorkerRuntime
from tests.pipeline.worker.worker_process import WorkerProcess

pytestmark = pytest.mark.kafka

START = datetime(2016, 6, 1, tzinfo=timezone.utc)
INVALID_WEATHER = b'{"location_id": "clemson", "temperature_c": "warm"}'
WORDS = ["great", "sad", "angry", "love", "win", "terrible", "happy", "bad", "#maga", "@cnn", "🙂"]


def tiny_checkpoint(path: Path) -> Path:
    """A small model with every part a trained preset has (vocabulary, lexicon features, lexical
    classifier fused into stage 1 with different first and later shares, a change classifier over the
    reported stage 1 of earlier steps, which users' states keep), random where training fits."""
    config = ModelConfig(image_backbone="resnet18", image_dim=512, hidden_size=16, common_dim=8, text_dim=8,
                         text_buckets=256, text_vocabulary=128, word_priors=("vader",), prior_buckets=512,
                         lexical_classifier=True, context_length=3, context_hidden=8, stage2_hidden=8,
                         change_history=2)
    model = build_model(config, seed=3)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.word_prior_table.copy_(torch.randn(model.word_prior_table.shape, generator=generator))
        for buffer in (model.lexical.idf, model.lexical.weight, model.lexical.prior_weight, model.lexical.bias):
            buffer.copy_(torch.rand(buffer.shape, generator=generator) * 2)
        model.lexical.share.copy_(torch.tensor([0.6, 0.3]))
        model.change_classifier.weight.copy_(torch.randn(model.change_classifier.n_features, generator=generator) * 0.5)
        model.change_classifier.mark_fitted()
    vocabulary = build_vocabulary([" ".join(WORDS)] * 2, config)
    save_checkpoint(path, model, CheckpointMeta.create(config, training_data_hash="test", random_backbone=True,
                                                       vocabulary=vocabulary))
    return path


def make_records() -> tuple[list, list]:
    rng = np.random.default_rng(7)
    context = []
    for day in range(-5, 3):
        t = START + timedelta(days=day)
        context.append((topics.WEATHER, WeatherObservation(location_id="clemson", latitude=34.7, longitude=-82.8,
                                                             observed_time=t + timedelta(hours=14),
                                                             temperature_c=20 + day, kind="hourly")))
        context.append((topics.MARKET, MarketTick(symbol="^GSPC", observed_time=t, open=2000 + day,
                                                  high=2010 + day, low=1990 + day, close=2005 + day * 3,
                                                  volume=1_000_000 + day, interval="1d")))
    posts = []
    for user in ("alice", "bob"):
        for i in range(30):
            when = START + timedelta(minutes=int(i * 37 + rng.integers(0, 20)))
            text = " ".join(rng.choice(WORDS, 5))
            posts.append((topics.POSTS, Post(event_id=f"{user}-{i}", user_id=user, event_time=when, text=text,
                                             source="test")))
    return context, posts


def test_worker_matches_the_offline_runtime(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.replace(
        model_checkpoint=tiny_checkpoint(tmp_path / "model.pt"), window_size_seconds=3600,
        window_slide_seconds=1800, allowed_lateness_seconds=0, emit_step_emotions=True,
        idle_close_seconds=3, context_location="clemson", context_symbol="^GSPC",
        worker_web_port=free_port(), retention_hours=24 * 365 * 30, batch_max_wait_ms=100,
    )
    ensure_topics(settings, topics.ALL_TOPICS)
    context, posts = make_records()
    late = Post(event_id="late-1", user_id="alice", event_time=START, text="too late", source="test")
    with EventProducer(settings, source="test") as producer:
        for topic, record in context:
            producer.send_event(topic, record)
        producer.client.send(settings.topic(topics.WEATHER), key=b"clemson", value=INVALID_WEATHER)
        producer.flush()
        for topic, record in posts:
            producer.send_event(topic, record)
        producer.send_event(topics.POSTS, late)
        producer.client.send(settings.topic(topics.POSTS), key=b"bob", value=b'{"user_id": "bob", oops')

    overrides = ("model_checkpoint", "window_size_seconds", "window_slide_seconds", "allowed_lateness_seconds",
                 "emit_step_emotions", "idle_close_seconds", "context_location", "context_symbol",
                 "worker_web_port", "batch_max_wait_ms")
    worker = WorkerProcess(settings, tmp_path / "worker.log", overrides)
    try:
        # Offline: the same records through the plain runtime (the late post arrives last there too).
        runtime = WorkerRuntime.from_settings(settings)
        for topic, record in context:
            runtime.add_context(settings.topic(topic), record.to_json_bytes())
        raw = [(settings.topic(t), r.user_id.encode(), r.to_json_bytes(), None) for t, r in posts]
        events, _ = runtime.decode(raw)
        first = runtime.process(events, {}, 0)
        second = runtime.process(runtime.decode([(settings.topic(topics.POSTS), b"alice",
                                                  late.to_json_bytes(), None)])[0], first.records, 0)
        flushed = runtime.flush_users({**first.records, **second.records})
        expected_steps = {(json.loads(v)["user_id"], json.loads(v)["window_end"]): json.loads(v)
                          for _, v in first.steps + flushed.steps}
        expected_changes = {json.loads(v)["change_id"] for _, v in first.change_points + flushed.change_points}
        assert len(expected_steps) > 40

        steps = consume(settings, topics.EMOTION_STEPS, len(expected_steps), worker)
        got = {(s["user_id"], s["window_end"]): s for s in steps}
        assert got.keys() == expected_steps.keys()
        for key, step in got.items():
            np.testing.assert_allclose(step["emotion"], expected_steps[key]["emotion"], atol=1e-5)
            assert step["modalities"] == expected_steps[key]["modalities"]
        assert all("context" in s["modalities"] for s in steps)  # the as-of join found the context

        letters = consume(settings, topics.DEAD_LETTERS, 3, worker)
        with pytest.raises(Rejected) as invalid_weather:
            WeatherObservation.from_json_bytes(INVALID_WEATHER)
        assert sorted((letter["topic"], letter["reason"]) for letter in letters) == [
            ("posts", "late"), ("posts", "malformed_json"), ("weather", invalid_weather.value.reason)]
        changes = consume(settings, topics.EMOTION_CHANGES, len(expected_changes), worker,
                          wait=5 if not expected_changes else 60)
        assert {c["change_id"] for c in changes} == expected_changes

        port = settings.worker_web_port
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10).read())
        assert health["ready"] is True
        exposition = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert f"moodshift_window_steps_total {float(len(expected_steps))}" in exposition
        assert 'moodshift_dead_letters_total{reason="late"} 1.0' in exposition
        # The model thread's CPU (loading the model, the batches) is part of the process's, never more.
        samples = {s.name: s.value for family in text_string_to_metric_families(exposition) for s in family.samples}
        assert 0 < samples["moodshift_model_thread_cpu_seconds_total"] < samples["process_cpu_seconds_total"]

        # A real Prometheus scrapes the running worker.
        from tests.deploy.conftest import PrometheusServer, run_prometheus

        target = f"127.0.0.1:{port}"
        job = {"job_name": "moodshift-worker", "static_configs": [{"targets": [target]}]}
        (tmp_path / "prometheus").mkdir()
        with run_prometheus([job], tmp_path / "prometheus") as (url, log):
            answer = PrometheusServer(url, target, "", log).wait_for("moodshift_window_steps_total")
            assert float(answer[0]["value"][1]) == len(expected_steps)
    finally:
        worker.stop()


def consume(settings: Settings, topic: str, count: int, worker: WorkerProcess, wait: float = 120) -> list[dict]:
    consumer = KafkaConsumer(settings.topic(topic), auto_offset_reset="earliest", consumer_timeout_ms=1000,
                             **settings.kafka_python_config())
    found: list[dict] = []
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline and (len(found) < count or count == 0):
            assert worker.alive(), worker.log_tail()
            found += [json.loads(record.value) for record in consumer]
    finally:
        consumer.close()
    assert len(found) >= count, f"{len(found)} of {count} records on {topic}:\n" + worker.log_tail()
    return found
