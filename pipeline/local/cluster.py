"""A real three-node Apache Kafka cluster (KRaft, every node broker and controller) on 127.0.0.1.

Users outgrow one broker first; the reliability tests kill one node of this cluster mid-stream.
Each node is a :class:`pipeline.local.broker.LocalBroker` with a state folder of its own, all
formatted with one cluster id and knowing every controller. Kafka's internal topics (offsets,
transactions) and the topics moodshift creates get replication factor 3 with
``min.insync.replicas`` 2, so the cluster goes on, without losing an acknowledged record, while any
one node is down.

>>> from pathlib import Path
>>> cluster = LocalCluster(Settings(state_dir=Path("/tmp/c")), ports=[(9101, 9201), (9102, 9202), (9103, 9203)])
>>> cluster.bootstrap
'127.0.0.1:9101,127.0.0.1:9102,127.0.0.1:9103'
>>> cluster.nodes[1].voters
'1@127.0.0.1:9201,2@127.0.0.1:9202,3@127.0.0.1:9203'
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

from moodshift.pipeline.local.broker import LocalBroker, new_cluster_id
from moodshift.pipeline.settings import Settings


class LocalCluster:
    """Nodes 1..n on the given (broker port, controller port) pairs, under ``settings.state_dir``."""

    def __init__(self, settings: Settings, ports: list[tuple[int, int]]) -> None:
        voters = ",".join(f"{i}@127.0.0.1:{controller}" for i, (_, controller) in enumerate(ports, 1))
        cluster_id = new_cluster_id()
        self.settings = settings.replace(replication_factor=len(ports))
        self.nodes = [
            LocalBroker(settings.replace(state_dir=settings.state_dir / f"node-{i}", broker_port=port,
                                         controller_port=controller),
                        node_id=i, voters=voters, cluster_id=cluster_id, replication=len(ports))
            for i, (port, controller) in enumerate(ports, 1)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self, timeout: float = 120.0) -> str:
        """Launch every node, then wait until each answers (a node needs a quorum of controllers)."""
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.start(timeout)
        return self.bootstrap

    def kill(self, index: int) -> None:
        """SIGKILL one node (0-based): no shutdown, no flush, as a machine that dies."""
        node = self.nodes[index]
        pid = node.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            node.pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop every node at once (each skips controlled shutdown, which needs a quorum the others'
        leaving takes away: :meth:`LocalBroker.write_properties`); about five seconds."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(LocalBroker.stop, self.nodes))
