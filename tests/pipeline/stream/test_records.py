"""Users' records: the byte format, and which of two records of a user is behind."""

from __future__ import annotations

import json

from moodshift.pipeline.stream.records import UserRecord, is_behind


def record(**applied: int) -> bytes:
    return UserRecord(model=b"\x01\x02", applied={k.replace("_", "/"): v for k, v in applied.items()}).to_bytes()


def test_a_record_round_trips_with_its_binary_state() -> None:
    data = UserRecord(model=bytes(range(256)) * 4, windows={"panes": [1, 2]}, detector={"current": 1},
                      last_step_ms=60_000, applied={"posts/1": 7})
    assert UserRecord.from_bytes(data.to_bytes()) == data
    assert UserRecord.from_bytes(UserRecord().to_bytes()) == UserRecord()


def test_a_record_written_before_a_field_existed_reads_with_its_default() -> None:
    document = json.dumps({"windows": None, "last_step_ms": 5}).encode()  # no "applied", no "detector"
    old = b"MSR1" + len(document).to_bytes(4, "little") + document + b"\x07"
    assert UserRecord.from_bytes(old) == UserRecord(model=b"\x07", last_step_ms=5)


def test_behind_means_nothing_past_the_other_and_something_short_of_it() -> None:
    assert is_behind(record(posts_0=4), record(posts_0=5))
    assert is_behind(record(posts_0=5), record(posts_0=5, videos_0=0))  # the other saw a video too
    assert is_behind(UserRecord().to_bytes(), record(posts_0=0))  # a record from before any event
    assert not is_behind(record(posts_0=5), record(posts_0=5))  # the same progress: last writer wins
    assert not is_behind(record(posts_0=6), record(posts_0=5))
    # Each ahead somewhere: cannot happen for one owner at a time; keep the changelog's order.
    assert not is_behind(record(posts_0=6, videos_0=1), record(posts_0=5, videos_0=2))


def test_unreadable_records_are_never_called_behind() -> None:
    assert not is_behind(b"garbage", record(posts_0=5))
    assert not is_behind(record(posts_0=1), b"MSR1")
