"""The users table's local writes, with both stores (no broker: stores open lazily)."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest
from kafka.partitioner.default import murmur2

from moodshift.pipeline.worker.users_table import UsersTable

PARTITIONS = 4


def users_table(store: str, folder: Path) -> UsersTable:
    app = faust.App("users-table-test", broker="kafka://127.0.0.1:1", store=f"{store}://", datadir=str(folder))
    return app.tables.add(UsersTable(app, name="users", beacon=app.tables.beacon, key_type=bytes, value_type=bytes,
                                     partitions=PARTITIONS, use_partitioner=True))


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_record_put_outside_any_event_is_read_back(store: str, tmp_path: Path) -> None:
    users = users_table(store, tmp_path)
    users.put(b"user-7", b"record 1")
    users.put(b"user-7", b"record 2")
    assert users.data.get(b"user-7") == b"record 2"


def test_rocksdb_files_a_record_under_its_keys_changelog_partition(tmp_path: Path) -> None:
    """The partition the Kafka producer's partitioner (murmur2, as in Java) gives the key: the one
    whose changelog holds the record and whose recovery reads it back into this local database."""
    users = users_table("rocksdb", tmp_path)
    keys = [f"user-{i}".encode() for i in range(20)]
    for key in keys:
        users.put(key, b"record of " + key)
    for key in keys:
        expected = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        holding = [p for p in range(PARTITIONS) if users.data._db_for_partition(p).get(key) is not None]
        assert holding == [expected], key
    assert len({(murmur2(key) & 0x7FFFFFFF) % PARTITIONS for key in keys}) > 1  # the keys spread out
