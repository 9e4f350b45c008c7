"""`moodshift kafka TOOL`: Kafka's own command-line tools against the real broker, as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from kafka import KafkaConsumer, KafkaProducer

from moodshift.connectors.topics import ensure_topics
from moodshift.pipeline.settings import Settings

pytestmark = pytest.mark.kafka


def moodshift_kafka(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    """``moodshift kafka ARGS`` in a fresh process, connection settings from the environment."""
    env = {**os.environ, "MOODSHIFT_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "MOODSHIFT_SECURITY_PROTOCOL": settings.security_protocol,
           "MOODSHIFT_SASL_MECHANISM": settings.sasl_mechanism, "MOODSHIFT_SASL_USERNAME": settings.sasl_username,
           "MOODSHIFT_SASL_PASSWORD": settings.sasl_password, "MOODSHIFT_SSL_CAFILE": settings.ssl_cafile,
           "MOODSHIFT_STATE_DIR": str(settings.state_dir)}
    return subprocess.run([sys.executable, "-m", "moodshift.pipeline.cli", "kafka", *args], env=env,
                          capture_output=True, text=True, timeout=180)


def test_consumer_groups_describes_a_groups_committed_offsets_and_lag(kafka_settings: Settings) -> None:
    topic, group = kafka_settings.topic("posts"), kafka_settings.topic("worker")
    ensure_topics(kafka_settings, ["posts"])
    producer = KafkaProducer(**kafka_settings.kafka_python_config())
    for i in range(7):
        producer.send(topic, key=b"user-1", value=b"%d" % i)  # one key: one partition
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(topic, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=10_000, **kafka_settings.kafka_python_config())
    read = 0
    for _ in consumer:
        read += 1
        if read == 4:
            break
    consumer.commit()  # 4 of 7: a lag of 3
    consumer.close()

    result = moodshift_kafka(kafka_settings, "consumer-groups", "--describe", "--group", group)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(group)]
    # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...; the records are all on one partition
    totals = [sum(int(row[column]) for row in rows if row[1] == topic and row[column] != "-") for column in (3, 4, 5)]
    assert totals == [4, 7, 3], result.stdout

    topics = moodshift_kafka(kafka_settings, "topics", "--describe", "--topic", topic)
    assert topics.returncode == 0, topics.stderr
    assert f"Topic: {topic}" in topics.stdout and f"PartitionCount: {kafka_settings.partitions}" in topics.stdout


def test_tools_connect_over_sasl_ssl_with_the_settings_credentials(secure_settings: Settings) -> None:
    ensure_topics(secure_settings, ["posts"])
    result = moodshift_kafka(secure_settings, "topics", "--list")
    assert result.returncode == 0, result.stderr
    assert secure_settings.topic("posts") in result.stdout.split()
    wrong = moodshift_kafka(secure_settings.replace(sasl_password="not-the-password"), "topics", "--list")
    assert wrong.returncode != 0 and secure_settings.topic("posts") not in wrong.stdout


def test_an_unknown_tool_is_refused_with_the_list() -> None:
    result = subprocess.run([sys.executable, "-m", "moodshift.pipeline.cli", "kafka", "console-producer"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "consumer-groups" in result.stderr
