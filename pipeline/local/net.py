"""Two small socket helpers for local processes: a free port, and whether an address answers.

>>> port = free_port()
>>> answers(f"127.0.0.1:{port}")
False
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(address: str, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds (a cheap check before a Kafka client,
    which logs every refused connection as an error)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False
