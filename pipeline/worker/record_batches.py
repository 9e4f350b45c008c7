"""A worker batch's outputs handed to the producer as one Kafka record batch per topic partition.

Why: faust's ``Topic.send`` wraps every record in its own message, future and callback before
aiokafka's ``send`` adds it to a batch, and every send gives the event loop a turn, so the producer's
sender went out with a request of about four records at a time (about 23,000 produce requests for
a 100,000-post drain, 1,550 now). aiokafka's ``create_batch``/``send_batch`` builds each batch in
one go: a draining worker's CPU per post fell by about a fifth (docs/benchmarks.md, "Outputs as
record batches").

What stays the same: a record goes to the partition the producer's default partitioner picks for
its key (murmur2, as every other producer of ours and Kafka's own), so a user's outputs keep their
order; a key of None goes to a partition chosen at random, as ``send`` does. What changes: an
acknowledgement covers a partition's records of the batch, and a failure fails them together
(the worker stops on either: ``WorkerState.output_sent``).

>>> partition_of(b"user-1", [0, 1, 2, 3]) == partition_of(b"user-1", [0, 1, 2, 3])
True
"""

from __future__ import annotations

import asyncio
from typing import Iterable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

#: (topic, key, value)
OutputRecord = tuple[str, "bytes | None", bytes]


def partition_of(key: bytes | None, partitions: Sequence[int]) -> int:
    """The partition aiokafka's default partitioner (Kafka's murmur2) picks for ``key``."""
    return DefaultPartitioner.__call__(key, list(partitions), list(partitions))


async def send_as_batches(producer: AIOKafkaProducer, records: Iterable[OutputRecord]) -> list[asyncio.Future]:
    """Hand ``records`` to ``producer``, one record batch per topic partition (more where one
    would outgrow the producer's batch size), in order within each; the batches' acknowledgements."""
    by_partition: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
    partitions: dict[str, list[int]] = {}
    for topic, key, value in records:
        if topic not in partitions:
            partitions[topic] = sorted(await producer.partitions_for(topic))
        by_partition.setdefault((topic, partition_of(key, partitions[topic])), []).append((key, value))
    acks = []
    for (topic, partition), partition_records in by_partition.items():
        batch = producer.create_batch()
        for key, value in partition_records:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                acks.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # a batch's first record always fits
        acks.append(await producer.send_batch(batch, topic, partition=partition))
    return acks
