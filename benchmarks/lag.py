"""The consumer lag of a processor's group and the outputs it emitted, sampled in a thread.

:class:`LagMeter` samples the input topic's end offsets, the group's committed offsets and the end
offsets of the processor's per-step output topic, each summed over partitions. **Backlog = input
end − per-step records emitted**: in these workloads every post closes exactly one window of its
user, so a processor keeping up emits one record per post (plus a constant: each user's open
window). Outputs, not commits, measure progress because the worker commits only at its checkpoints
(every 10 s by default): committed offsets move in steps of that size, and a drain timed to the
commit measured which checkpoint came after its last post (docs/benchmarks.md, "Drains timed the
checkpoint").
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from moodshift.connectors import topics
from moodshift.pipeline.settings import Settings

if TYPE_CHECKING:
    from benchmarks.through_kafka import Service

SAMPLE_INTERVAL_S = 0.2
EMITTED_POLL_S = 0.02  # a drain's end, to a fiftieth of a second


@dataclass(frozen=True)
class LagSample:
    t: float  # time.monotonic()
    end: int  # the input topic's end offsets, summed
    committed: int  # the group's committed offsets, summed
    emitted: int  # the per-step output topic's end offsets, summed

    @property
    def lag(self) -> int:
        """Input records not committed yet."""
        return self.end - self.committed

    @property
    def backlog(self) -> int:
        """Input records without their per-step record, plus one per user with an open window."""
        return self.end - self.emitted


class LagMeter:
    """The consumer lag of ``group_id`` on the ``posts`` topic and the per-step records emitted;
    samples in a thread while running."""

    def __init__(self, settings: Settings, group_id: str) -> None:
        self.settings = settings
        self.group_id = group_id
        self.admin = KafkaAdminClient(**settings.kafka_python_config())
        self.consumer = KafkaConsumer(**settings.kafka_python_config())
        self.partitions = self._partitions(settings.topic(topics.POSTS))
        self.output_partitions = self._partitions(settings.topic(topics.EMOTION_STEPS))
        self.samples: list[LagSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def _partitions(self, topic: str) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic))]

    def sample(self) -> LagSample | None:
        """None while the group's coordinator is not known yet (a fresh broker, a new group)."""
        with self._lock:
            end = self.consumer.end_offsets(self.partitions)
            emitted = self.consumer.end_offsets(self.output_partitions)
            try:
                committed = self.admin.list_group_offsets({self.group_id: self.partitions})[self.group_id]
            except KafkaError as error:
                if error.retriable:
                    return None
                raise
        done = sum(max(0, c.offset) for c in committed.values() if c is not None)
        return LagSample(time.monotonic(), sum(end.values()), done, sum(emitted.values()))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            sample = self.sample()
            if sample is not None:
                self.samples.append(sample)

    def __enter__(self) -> "LagMeter":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.admin.close()
        self.consumer.close()

    def between(self, start: float, end: float) -> list[LagSample]:
        return [s for s in list(self.samples) if start <= s.t <= end]

    def wait_caught_up(self, timeout: float, service: Service | None = None) -> float:
        """Seconds until the group has committed everything (lag 0); raises after ``timeout``."""
        def caught_up() -> tuple[bool, str]:
            sample = self.sample()
            done = sample is not None and sample.lag == 0 and sample.end > 0
            return done, f"group {self.group_id} still lags {'an unknown number of' if sample is None else sample.lag} records"
        return self._wait(caught_up, timeout, service, SAMPLE_INTERVAL_S)

    def wait_emitted(self, count: int, timeout: float, service: Service | None = None) -> str:
        """Until the per-step output topic holds ``count`` records ("outputs"), sooner than
        :meth:`wait_caught_up` by up to a checkpoint interval; or until the group has committed
        everything, if that comes first ("commit": fewer outputs than expected, e.g. windows that
        several posts share). Raises after ``timeout``."""
        polls, ended = [0], []

        def emitted() -> tuple[bool, str]:
            with self._lock:
                now = sum(self.consumer.end_offsets(self.output_partitions).values())
            polls[0] += 1
            if now < count and polls[0] % round(SAMPLE_INTERVAL_S / EMITTED_POLL_S) == 0:
                sample = self.sample()  # the group's offsets as often as the sampling thread asks
                if sample is not None and sample.lag == 0 and sample.end > 0:
                    ended.append("commit")
            return now >= count or bool(ended), f"{now} of {count} per-step records emitted"
        self._wait(emitted, timeout, service, EMITTED_POLL_S)
        return ended[0] if ended else "outputs"

    @staticmethod
    def _wait(done: Callable[[], tuple[bool, str]], timeout: float, service: Service | None,
              poll_seconds: float) -> float:
        started = time.monotonic()
        while True:
            finished, state = done()
            if finished:
                return time.monotonic() - started
            if service is not None and service.process.poll() is not None:
                raise RuntimeError(f"the processor exited with {service.process.returncode}; see {service.log_path}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{state} after {timeout:.0f} s")
            time.sleep(poll_seconds)
