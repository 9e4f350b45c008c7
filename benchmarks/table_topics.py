"""A faust table's changelog topic in the benchmarks: :func:`topic_bytes` reads a topic back and asks
the broker its size on disk; :func:`write_table` fills a table's changelog before its app starts."""

from __future__ import annotations

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from benchmarks.through_kafka import end_offsets
from moodshift.pipeline.settings import Settings


def topic_bytes(settings: Settings, topic: str) -> dict[str, int]:
    """A topic read back: records, distinct keys, key+value bytes of all records and of the latest
    per key (what compaction keeps), and the partitions' size on the broker's disk."""
    start = end_offsets(settings, topic)
    consumer = KafkaConsumer(**settings.kafka_python_config(), enable_auto_commit=False)
    latest: dict[bytes, int] = {}
    total = records = 0
    try:
        consumer.assign(list(start))
        consumer.seek_to_beginning()
        while any(consumer.position(tp) < offset for tp, offset in start.items()):
            for batch in consumer.poll(timeout_ms=1000).values():
                for record in batch:
                    size = len(record.key or b"") + len(record.value or b"")
                    total, records = total + size, records + 1
                    latest[record.key] = size
    finally:
        consumer.close()
    admin = KafkaAdminClient(**settings.kafka_python_config())
    try:
        described = admin.describe_log_dirs({topic: [tp.partition for tp in start]})
    finally:
        admin.close()
    return {"records": records, "keys": len(latest), "all_records_bytes": total,
            "latest_per_key_bytes": sum(latest.values()), "on_disk_bytes": _partition_sizes(described, topic)}


def _partition_sizes(described: list[dict], topic: str) -> int:
    return sum(partition["partition_size"] for broker in described for log_dir in broker["log_dirs"]
               for entry in log_dir["topics"] if entry["name"] == topic for partition in entry["partitions"])


def write_table(settings: Settings, changelog_topic: str, rows: dict[str, bytes]) -> None:
    """Write a faust table's contents into its (new, compacted) changelog topic before the app
    starts: the app recovers them as if it had built them itself. The topic is compressed as the
    worker would create it (``changelog_compression``)."""
    admin = KafkaAdminClient(**settings.kafka_python_config())
    try:
        admin.create_topics([NewTopic(changelog_topic, num_partitions=settings.partitions,
                                      replication_factor=settings.replication_factor,
                                      topic_configs={"cleanup.policy": "compact",
                                                     "compression.type": settings.changelog_compression})])
    finally:
        admin.close()
    producer = KafkaProducer(**settings.kafka_python_config(), acks="all", linger_ms=20)
    try:
        for key, value in rows.items():
            producer.send(changelog_topic, key=key.encode(), value=value)
        producer.flush()
    finally:
        producer.close()
