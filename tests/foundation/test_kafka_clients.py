"""Smoke tests: kafka-python, aiokafka and a faust worker against the real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from moodshift.pipeline.settings import Settings

pytestmark = pytest.mark.kafka


def test_kafka_python_produce_consume_in_a_group(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic("smoke")
    config = kafka_settings.kafka_python_config()
    admin = KafkaAdminClient(**config)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(acks="all", **config)
    for i in range(20):
        producer.send(topic, key=f"user-{i % 3}".encode(), value=f"{i}".encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        topic, group_id=kafka_settings.topic("group"), auto_offset_reset="earliest",
        consumer_timeout_ms=20000, **config,
    )
    seen = []
    for record in consumer:
        seen.append((record.key.decode(), int(record.value)))
        if len(seen) == 20:
            break
    consumer.commit()
    consumer.close()
    assert sorted(v for _, v in seen) == list(range(20))
    # Per key, order is preserved (one key → one partition).
    for user in ("user-0", "user-1", "user-2"):
        values = [v for k, v in seen if k == user]
        assert values == sorted(values)


def test_aiokafka_produce_consume_in_a_group(kafka_settings: Settings) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = kafka_settings.topic("aio")

    async def roundtrip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, f"m{i}".encode(), key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_settings.bootstrap_servers,
            group_id=kafka_settings.topic("aio-group"), auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            values = []
            while len(values) < 5:
                batch = await consumer.getmany(timeout_ms=10000)
                assert batch, "no records within 10 s"
                values += [record.value for records in batch.values() for record in records]
            await consumer.commit()
            return values
        finally:
            await consumer.stop()

    assert asyncio.run(roundtrip()) == [f"m{i}".encode() for i in range(5)]


def test_faust_worker_with_table_writes_its_changelog(kafka_settings: Settings, tmp_path: Path) -> None:
    """A faust agent with a repartitioning group_by and a table: the changelog holds the counts."""
    app_path = Path(__file__).with_name("faust_counter_app.py")
    env = dict(os.environ,
               MOODSHIFT_BOOTSTRAP_SERVERS=kafka_settings.bootstrap_servers,
               MOODSHIFT_TOPIC_PREFIX=kafka_settings.topic_prefix,
               MOODSHIFT_STATE_DIR=str(tmp_path), MOODSHIFT_PARTITIONS="2",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen([sys.executable, str(app_path), "worker", "-l", "info"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    config = kafka_settings.kafka_python_config()
    changelog = f"{kafka_settings.topic('counter-app')}-counts-changelog"
    try:
        producer = KafkaProducer(acks="all", value_serializer=lambda v: f'"{v}"'.encode(), **config)
        words = ["calm", "angry", "calm", "joy", "calm", "angry"]
        for i, word in enumerate(words):
            producer.send(kafka_settings.topic("lines"), key=f'"{i}"'.encode(), value=word)
        producer.flush()
        producer.close()

        consumer = KafkaConsumer(changelog, auto_offset_reset="earliest", consumer_timeout_ms=2000, **config)
        latest: dict[str, int] = {}
        deadline = time.monotonic() + 90
        while latest != {"calm": 3, "angry": 2, "joy": 1} and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            for record in consumer:
                latest[record.key.decode().strip('"')] = int(record.value)
        consumer.close()
        assert latest == {"calm": 3, "angry": 2, "joy": 1}, (tmp_path / "worker.log").read_text()[-3000:]
        admin = KafkaAdminClient(**config)
        topics = admin.list_topics()
        admin.close()
        # faust names repartition topics after the agent's module path, not the app id (a pitfall:
        # renaming the module orphans the topic), so match on our unique topic name inside it.
        assert any(t.endswith("-by-word-repartition") and kafka_settings.topic("lines") in t for t in topics), topics
    finally:
        worker.terminate()
        worker.wait(timeout=60)
