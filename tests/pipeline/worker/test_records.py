"""Users' records: the byte format, and which of two records of a user is behind."""

from __future__ import annotations

from pipeline.worker.records import decode_record, encode_record, is_behind


def record(**applied: int) -> bytes:
    return encode_record({"model": b"\x01\x02", "applied": {k.replace("_", "/"): v for k, v in applied.items()}})


def test_a_record_round_trips_with_its_binary_state() -> None:
    data = {"model": bytes(range(256)) * 4, "windows": {"panes": [1, 2]}, "applied": {"posts/1": 7}}
    assert decode_record(encode_record(data)) == data


def test_behind_means_nothing_past_the_other_and_something_short_of_it() -> None:
    assert is_behind(record(posts_0=4), record(posts_0=5))
    assert is_behind(record(posts_0=5), record(posts_0=5, videos_0=0))  # the other saw a video too
    assert is_behind(encode_record({"model": None}), record(posts_0=0))  # a record from before any event
    assert not is_behind(record(posts_0=5), record(posts_0=5))  # the same progress: last writer wins
    assert not is_behind(record(posts_0=6), record(posts_0=5))
    # Each ahead somewhere: cannot happen for one owner at a time; keep the changelog's order.
    assert not is_behind(record(posts_0=6, videos_0=1), record(posts_0=5, videos_0=2))


def test_unreadable_records_are_never_called_behind() -> None:
    assert not is_behind(b"garbage", record(posts_0=5))
    assert not is_behind(record(posts_0=1), b"MSR1")
