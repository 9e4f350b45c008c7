"""The sequence batcher: batch limits, deadlines, per-user order, the asyncio wrapper."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.batcher import AsyncBatcher, SequenceBatcher

# -- synchronous core ------------------------------------------------------------------------------

operations = st.lists(
    st.tuples(st.sampled_from(["add", "poll"]), st.sampled_from("abcd"), st.floats(0, 0.4)),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations, st.integers(1, 4), st.sampled_from([0.0, 0.25, 1.0]))
def test_core_releases_every_item_once_in_per_key_order_within_limits(ops, max_batch, max_wait):
    batcher: SequenceBatcher[tuple[str, int]] = SequenceBatcher(max_batch, max_wait)
    now, added, released = 0.0, [], []
    first_seen: dict[tuple[str, int], float] = {}
    for op, key, dt in ops:
        now += dt
        if op == "add":
            item = (key, len(added))
            added.append(item)
            first_seen[item] = now
            due = batcher.add(key, item, now)
        else:
            due = batcher.poll(now)
        for batch in due:
            assert 1 <= len(batch) <= max_batch
            assert len({k for k, _ in batch}) == len(batch)  # one step per key per batch
            # released because full or because its first item waited long enough
            assert len(batch) == max_batch or now - min(first_seen[i] for i in batch) >= max_wait - 1e-12
        released.extend(due)
        deadline = batcher.next_deadline()
        assert deadline is None or deadline > now  # nothing due is left behind
    released.extend(batcher.flush())
    assert len(batcher) == 0 and batcher.next_deadline() is None
    flat = [item for batch in released for item in batch]
    assert sorted(flat) == sorted(added)
    for key in "abcd":
        assert [i for i in flat if i[0] == key] == [i for i in added if i[0] == key]


def test_core_wait_counts_from_first_item_and_zero_wait_releases_at_once():
    batcher = SequenceBatcher(max_batch=10, max_wait_seconds=1.0)
    assert batcher.add("a", 1, now=5.0) == []
    assert batcher.add("b", 2, now=5.9) == []
    assert batcher.next_deadline() == 6.0
    assert batcher.poll(now=5.99) == [] and batcher.poll(now=6.0) == [[1, 2]]
    assert SequenceBatcher(max_batch=10, max_wait_seconds=0).add("a", 1, now=0.0) == [[1]]


def test_core_same_key_goes_after_its_last_waiting_step():
    batcher = SequenceBatcher(max_batch=3, max_wait_seconds=10)
    for key, item in [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("a", "a4")]:
        batcher.add(key, item, now=0.0)
    assert batcher.flush() == [["a1", "b1"], ["a2"], ["a3"], ["a4"]]


@pytest.mark.parametrize("kwargs", [dict(max_batch=0, max_wait_seconds=1), dict(max_batch=1, max_wait_seconds=-1)])
def test_core_rejects_bad_limits(kwargs):
    with pytest.raises(ValueError):
        SequenceBatcher(**kwargs)


# -- asyncio wrapper -------------------------------------------------------------------------------


class RecordingModel:
    """A batch function that records its calls and checks that no two ever overlap."""

    def __init__(self, sleep: float = 0.0) -> None:
        self.sleep = sleep
        self.calls: list[list[tuple[str, int]]] = []
        self.threads: set[int] = set()
        self._active = 0
        self._lock = threading.Lock()
        self.overlapped = False

    def __call__(self, items: list[tuple[str, int]]) -> list[str]:
        with self._lock:
            self._active += 1
            self.overlapped |= self._active > 1
        self.threads.add(threading.get_ident())
        time.sleep(self.sleep)
        self.calls.append(list(items))
        with self._lock:
            self._active -= 1
        return [f"{user}:{n}" for user, n in items]


def test_async_batches_never_overlap_keep_user_order_and_scatter_results():
    model = RecordingModel(sleep=0.005)

    async def main():
        async with AsyncBatcher(model, max_batch=4, max_wait_seconds=0.002) as batcher:

            async def user(name: str, steps: int):
                out = []
                for n in range(steps):
                    out.append(await batcher.submit(name, (name, n)))
                return out

            async def burst():  # several steps of one user submitted at once
                return await asyncio.gather(*(batcher.submit("z", ("z", n)) for n in range(6)))

            return await asyncio.gather(*(user(f"u{i}", 5) for i in range(7)), burst())

    results = asyncio.run(main())
    assert results[:7] == [[f"u{i}:{n}" for n in range(5)] for i in range(7)]
    assert results[7] == [f"z:{n}" for n in range(6)]
    assert not model.overlapped
    assert len(model.threads) == 1 and threading.get_ident() not in model.threads
    assert all(len(c) <= 4 and len({u for u, _ in c}) == len(c) for c in model.calls)
    assert len(model.calls) < 7 * 5 + 6  # it did batch
    order = [item for call in model.calls for item in call]
    for name in [f"u{i}" for i in range(7)] + ["z"]:
        steps = [n for u, n in order if u == name]
        assert steps == sorted(steps)


def test_async_event_loop_keeps_running_while_the_model_works():
    model = RecordingModel(sleep=0.3)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        async with AsyncBatcher(model, max_batch=1, max_wait_seconds=0) as batcher:
            await batcher.submit("u", ("u", 0))
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 10


def test_async_exception_reaches_every_waiter_of_its_batch_only():
    def flaky(items):
        if any(n == 1 for _, n in items):
            raise RuntimeError("model exploded")
        return [n for _, n in items]

    async def main():
        async with AsyncBatcher(flaky, max_batch=2, max_wait_seconds=10) as batcher:
            first = await asyncio.gather(
                batcher.submit("a", ("a", 1)), batcher.submit("b", ("b", 2)), return_exceptions=True
            )
            second = await asyncio.gather(batcher.submit("a", ("a", 3)), batcher.submit("b", ("b", 4)))
            return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) and "exploded" in str(e) for e in first)
    assert second == [3, 4]


def test_async_wrong_number_of_results_is_an_error():
    async def main():
        async with AsyncBatcher(lambda items: [], max_batch=1, max_wait_seconds=0) as batcher:
            await batcher.submit("a", 1)

    with pytest.raises(ValueError, match="0 results for 1 items"):
        asyncio.run(main())


def test_async_deadline_releases_a_lone_item_and_close_flushes_the_rest():
    model = RecordingModel()

    async def main():
        batcher = AsyncBatcher(model, max_batch=100, max_wait_seconds=0.02)
        start = time.monotonic()
        assert await batcher.submit("a", ("a", 0)) == "a:0"
        waited = time.monotonic() - start
        slow = AsyncBatcher(model, max_batch=100, max_wait_seconds=3600)
        pending = asyncio.ensure_future(slow.submit("b", ("b", 0)))
        await asyncio.sleep(0.01)
        await slow.aclose()
        await batcher.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await slow.submit("c", ("c", 0))
        return waited, await pending

    waited, flushed = asyncio.run(main())
    assert 0.015 <= waited < 1.0
    assert flushed == "b:0"
