"""A connector and a real worker over SASL_SSL (SCRAM-SHA-512), with the password from the environment
and from a secret file; wrong credentials stop the worker at once; no secret leaks anywhere.

The connector (``moodshift ingest posts``) gets its password from ``MOODSHIFT_SASL_PASSWORD``, the
worker from ``MOODSHIFT_SASL_PASSWORD_FILE``; both log at DEBUG. Everything read back (per-step
emotions, dead letters) is read over SASL_SSL too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
from kafka import KafkaConsumer

from moodshift.connectors import topics
from moodshift.pipeline.local.net import free_port
from moodshift.pipeline.settings import Settings
from tests.pipeline.worker.test_worker_kafka import make_records, tiny_checkpoint

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
WRONG_PASSWORD = "not-the-password-4711"


def connection_env(settings: Settings, **password: str) -> dict[str, str]:
    """The environment of a moodshift process that connects like ``settings``, given one password source."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOODSHIFT_")}
    env.update(
        MOODSHIFT_BOOTSTRAP_SERVERS=settings.bootstrap_servers, MOODSHIFT_SECURITY_PROTOCOL=settings.security_protocol,
        MOODSHIFT_SASL_MECHANISM=settings.sasl_mechanism, MOODSHIFT_SASL_USERNAME=settings.sasl_username,
        MOODSHIFT_SSL_CAFILE=settings.ssl_cafile, MOODSHIFT_TOPIC_PREFIX=settings.topic_prefix,
        MOODSHIFT_PARTITIONS=str(settings.partitions), MOODSHIFT_STATE_DIR=str(settings.state_dir),
        MOODSHIFT_RETENTION_HOURS=str(settings.retention_hours), PYTHONPATH=str(REPO),
        **{f"MOODSHIFT_{name.upper()}": value for name, value in password.items()},
    )
    return env


def submissions() -> list[str]:
    """The posts of the worker test (two users, 2016) as JSON submissions, the connectors' input."""
    fields = ("event_id", "user_id", "event_time", "text")
    return [json.dumps({name: json.loads(post.to_json_bytes())[name] for name in fields}) for _, post in make_records()[1]]


def secret_file(folder: Path, password: str) -> Path:
    """A password file as Kubernetes or compose would mount it: owner-readable, trailing newline."""
    path = folder / "kafka-password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


def worker_command(settings: Settings) -> list[str]:
    overrides = ["model_checkpoint", "window_size_seconds", "window_slide_seconds", "allowed_lateness_seconds",
                 "emit_step_emotions", "idle_close_seconds", "worker_web_port", "batch_max_wait_ms"]
    return [sys.executable, "-m", "moodshift.pipeline.cli", "-v", *(f"--set={name}={getattr(settings, name)}" for name in overrides),
            "worker", "--loglevel", "debug"]


def read_topic(settings: Settings, topic: str, done: Callable[[list[bytes]], bool], worker: subprocess.Popen, log: Path, wait: float = 120) -> list[bytes]:
    """Raw values of ``topic`` (read over the settings' SASL_SSL connection) until ``done(values)``."""
    consumer = KafkaConsumer(settings.topic(topic), auto_offset_reset="earliest", consumer_timeout_ms=1000,
                             **settings.kafka_python_config())
    values: list[bytes] = []
    deadline = time.monotonic() + wait
    try:
        while not done(values) and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-4000:]
            values += [record.value for record in consumer]
    finally:
        consumer.close()
    assert done(values), f"{len(values)} records on {topic}:\n" + log.read_text()[-4000:]
    return values


def test_connector_and_worker_over_sasl_ssl_leak_no_secret(secure_settings: Settings, tmp_path: Path) -> None:
    settings = secure_settings.replace(
        model_checkpoint=tiny_checkpoint(tmp_path / "model.pt"), window_size_seconds=3600, window_slide_seconds=1800,
        allowed_lateness_seconds=0, emit_step_emotions=True, idle_close_seconds=3, worker_web_port=free_port(),
        batch_max_wait_ms=100, retention_hours=24 * 365 * 30,  # the posts are from 2016
    )
    password = settings.sasl_password
    posts = submissions()
    feed = tmp_path / "posts.jsonl"
    feed.write_text("".join(f"{post}\n" for post in posts) + "{oops\n")

    # The connector: password from an environment variable.
    ingest = subprocess.run([sys.executable, "-m", "moodshift.pipeline.cli", "-v", "ingest", "posts", str(feed), "--no-progress"],
                            env=connection_env(settings, sasl_password=password), cwd=tmp_path,
                            capture_output=True, text=True, timeout=180)
    assert ingest.returncode == 0, ingest.stderr[-4000:]
    assert f"{len(posts)} accepted, 1 dead-lettered" in ingest.stdout

    # The worker: password from a secret file.
    log = tmp_path / "worker.log"
    env = connection_env(settings, sasl_password_file=str(secret_file(tmp_path, password)))
    with open(log, "wb") as out:
        worker = subprocess.Popen(worker_command(settings), env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        steps = read_topic(settings, topics.EMOTION_STEPS, worker=worker, log=log,
                           done=lambda values: {json.loads(v)["user_id"] for v in values} == {"alice", "bob"})
        assert all(len(json.loads(v)["emotion"]) > 1 for v in steps)
        letters = read_topic(settings, topics.DEAD_LETTERS, lambda values: len(values) >= 1, worker, log)
        assert [json.loads(v)["reason"] for v in letters] == ["malformed_json"]
        exposition = urllib.request.urlopen(f"http://127.0.0.1:{settings.worker_web_port}/metrics", timeout=10).read()
        assert b"moodshift_window_steps_total" in exposition
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    worker_log = log.read_text(errors="replace")
    # The logs are DEBUG logs of SASL_SSL connections, so the check below looks where a leak would be.
    assert "SASL_SSL" in worker_log and "SCRAM-SHA-512" in worker_log and "DEBUG" in worker_log
    assert "DEBUG" in ingest.stderr and "SASL" in ingest.stderr
    for where, text in {"connector output": ingest.stdout + ingest.stderr, "worker log": worker_log,
                        "/metrics": exposition.decode(), "dead letters": b"".join(letters).decode(),
                        "emotion steps": b"".join(steps).decode()}.items():
        assert password not in text, f"the SASL password appears in the {where}"


def test_wrong_password_stops_the_worker_at_once_with_a_clear_message(secure_settings: Settings,
                                                                      tmp_path: Path) -> None:
    settings = secure_settings.replace(model_checkpoint=tiny_checkpoint(tmp_path / "model.pt"),
                                       worker_web_port=free_port())
    started = time.monotonic()
    worker = subprocess.run(worker_command(settings), env=connection_env(settings, sasl_password=WRONG_PASSWORD),
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert worker.returncode == 2, worker.stderr[-3000:]
    assert elapsed < 30, f"took {elapsed:.0f} s"
    message = (f"moodshift worker: authentication failed for user '{settings.sasl_username}' with SCRAM-SHA-512 "
               f"at {settings.bootstrap_servers}: the broker rejected the username or password")
    assert message in worker.stderr
    assert WRONG_PASSWORD not in worker.stdout + worker.stderr


def test_wrong_password_fails_the_connector_naming_the_cause(secure_settings: Settings, tmp_path: Path) -> None:
    """The connectors check the login before they produce (kafka-python alone would retry it for 30 s)."""
    feed = tmp_path / "posts.jsonl"
    feed.write_text(submissions()[0] + "\n")
    started = time.monotonic()
    ingest = subprocess.run([sys.executable, "-m", "moodshift.pipeline.cli", "ingest", "posts", str(feed), "--no-progress"],
                            env=connection_env(secure_settings, sasl_password=WRONG_PASSWORD), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert ingest.returncode == 2
    assert elapsed < 30, f"took {elapsed:.0f} s"
    assert "authentication failed for user" in ingest.stderr and "rejected the username or password" in ingest.stderr
    assert WRONG_PASSWORD not in ingest.stdout + ingest.stderr
