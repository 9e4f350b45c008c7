"""A three-node cluster (replication factor 3, min.insync.replicas 2) loses a broker to kill -9 in the
middle of a stream; the outputs, deduplicated by id, must equal an uninterrupted run's."""

from __future__ import annotations

from pathlib import Path

import pytest

from moodshift.pipeline.local.cluster import LocalCluster
from moodshift.pipeline.local.net import free_port
from moodshift.pipeline.settings import Settings
from tests.reliability.test_recovery import Feeder, Outputs, WorkerProcess, prepare, run_with_disruption

pytestmark = pytest.mark.kafka


@pytest.mark.stress
def test_a_broker_of_three_is_killed_mid_stream(kafka_cluster: Settings, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    cluster = LocalCluster(kafka_cluster.replace(state_dir=tmp_path / "cluster"),
                           ports=[(free_port(), free_port()) for _ in range(3)])
    try:
        settings = cluster.settings.replace(bootstrap_servers=cluster.start(), topic_prefix="cluster.",
                                            state_dir=tmp_path / "state")
        stream = prepare(settings, tmp_path)
        first = stream.worker(tmp_path / "worker.log")

        def kill_a_broker(feeder: Feeder, outputs: Outputs) -> list[WorkerProcess]:
            outputs.wait_sent(feeder, 1 / 3, [first])
            feeder.disruption_lands()
            cluster.kill(1)
            return []

        run_with_disruption(stream, kill_a_broker, first, feed_seconds=30)
    finally:
        cluster.stop()
    # Every node stops by itself (a cluster node skips controlled shutdown: the test below).
    assert "ignored SIGTERM" not in caplog.text


def test_the_last_node_of_a_cluster_that_lost_one_stops_without_a_quorum(kafka_cluster: Settings, tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """One node killed, the other two stopped one after the other: the last one has no quorum left.
    With controlled shutdown it would wait for its own controller to commit a record it never can
    (five minutes, Kafka's shutdown timeout); a cluster node skips it and stops within seconds."""
    cluster = LocalCluster(kafka_cluster.replace(state_dir=tmp_path / "cluster"),
                           ports=[(free_port(), free_port()) for _ in range(3)])
    try:
        cluster.start()
        cluster.kill(1)
        for node in (cluster.nodes[0], cluster.nodes[2]):
            assert node.stop(timeout=30)
    finally:
        cluster.stop()
    assert "ignored SIGTERM" not in caplog.text
