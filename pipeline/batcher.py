"""The sequence batcher: many users' steps gathered into one model call, results scattered back.

A batch is released when it holds ``max_batch`` items or when ``max_wait_seconds`` have passed since
its first item arrived, whichever comes first. Time here is *processing* time in seconds from a
monotonic clock (``loop.time()``), unlike event times elsewhere in the pipeline.

**Per-user order.** A batch holds at most one step per key (user). A second step of a user that is
already waiting goes to a later batch, and batches run strictly one after another, in order, on a
single thread: so a user's steps run in the order they were submitted, and step ``n + 1`` starts only
after step ``n`` has finished. For that to mean "step ``n + 1`` sees the state step ``n`` wrote", the
batch function must read and write per-user model state *when it runs* (inside ``fn``), not capture
it when the step is submitted.

:class:`SequenceBatcher` is the synchronous, deterministic core (you pass the clock in);
:class:`AsyncBatcher` wraps it for asyncio: ``await submit(key, item)`` returns that item's result,
and ``fn`` runs in a single dedicated executor thread, so the event loop (faust's heartbeats and
commits) never blocks on the model and model calls never overlap. An exception raised by ``fn``
(or a result list of the wrong length) is raised to every waiter of that batch, never swallowed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _OpenBatch(Generic[T]):
    first_at: float
    items: list[T] = field(default_factory=list)
    keys: set[Hashable] = field(default_factory=set)


class SequenceBatcher(Generic[T]):
    """Synchronous batching core: ``add`` and ``poll`` return the batches that are due, in order.

    >>> b = SequenceBatcher(max_batch=2, max_wait_seconds=0.5)
    >>> b.add("u1", "u1-step1", now=0.0)
    []
    >>> b.add("u1", "u1-step2", now=0.1)  # same user: waits for the next batch
    []
    >>> b.add("u2", "u2-step1", now=0.2)  # the first batch is full
    [['u1-step1', 'u2-step1']]
    >>> b.poll(now=0.5), b.poll(now=0.6)  # the second batch's first item came at 0.1
    ([], [['u1-step2']])
    """

    def __init__(self, max_batch: int, max_wait_seconds: float) -> None:
        if max_batch < 1 or max_wait_seconds < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_seconds at least 0")
        self.max_batch = max_batch
        self.max_wait_seconds = max_wait_seconds
        self._pending: deque[_OpenBatch[T]] = deque()

    def __len__(self) -> int:
        """Items waiting."""
        return sum(len(batch.items) for batch in self._pending)

    def add(self, key: Hashable, item: T, now: float) -> list[list[T]]:
        """Queue ``item`` after any waiting item of the same ``key``; return the batches now due."""
        position = 0
        for i in range(len(self._pending) - 1, -1, -1):
            if key in self._pending[i].keys:
                position = i + 1
                break
        while position < len(self._pending) and len(self._pending[position].items) >= self.max_batch:
            position += 1
        if position == len(self._pending):
            self._pending.append(_OpenBatch(first_at=now))
        batch = self._pending[position]
        batch.items.append(item)
        batch.keys.add(key)
        return self.poll(now)

    def poll(self, now: float) -> list[list[T]]:
        """The batches that are full or have waited ``max_wait_seconds``, oldest first."""
        due = []
        while self._pending and (
            len(self._pending[0].items) >= self.max_batch
            or now - self._pending[0].first_at >= self.max_wait_seconds
        ):
            due.append(self._pending.popleft().items)
        return due

    def next_deadline(self) -> float | None:
        """When the oldest waiting batch becomes due (None when nothing waits)."""
        return self._pending[0].first_at + self.max_wait_seconds if self._pending else None

    def flush(self) -> list[list[T]]:
        """Every waiting batch, due or not, in order (shutdown)."""
        due = [batch.items for batch in self._pending]
        self._pending.clear()
        return due


class AsyncBatcher(Generic[T, R]):
    """asyncio front of :class:`SequenceBatcher`: ``await submit(key, item)`` gives ``fn``'s result.

    ``fn(items) -> results`` gets one batch and must return one result per item, in order.

    >>> async def main():
    ...     async with AsyncBatcher(lambda xs: [x * 10 for x in xs], max_batch=8, max_wait_seconds=0.01) as b:
    ...         return await asyncio.gather(b.submit("u1", 1), b.submit("u2", 2), b.submit("u1", 3))
    >>> asyncio.run(main())
    [10, 20, 30]
    """

    def __init__(
        self, fn: Callable[[list[T]], Sequence[R]], max_batch: int, max_wait_seconds: float
    ) -> None:
        self._fn = fn
        self._core: SequenceBatcher[tuple[T, asyncio.Future[R]]] = SequenceBatcher(max_batch, max_wait_seconds)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moodshift-batch")
        self._ready: asyncio.Queue[list[tuple[T, asyncio.Future[R]]] | None] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    async def __aenter__(self) -> AsyncBatcher[T, R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def submit(self, key: Hashable, item: T) -> R:
        """Queue one step of ``key`` and wait for its result (or ``fn``'s exception)."""
        if self._closed:
            raise RuntimeError("AsyncBatcher is closed")
        loop = asyncio.get_running_loop()
        if self._runner is None:
            self._ready = asyncio.Queue()
            self._runner = loop.create_task(self._run_batches())
        future: asyncio.Future[R] = loop.create_future()
        self._release(self._core.add(key, (item, future), loop.time()))
        return await future

    async def aclose(self) -> None:
        """Run everything still waiting, then stop the runner and its thread."""
        if self._closed:
            return
        self._closed = True
        if self._runner is not None and self._ready is not None:
            self._release(self._core.flush())
            self._ready.put_nowait(None)
            await self._runner
        self._executor.shutdown(wait=True)

    def _release(self, batches: list[list[tuple[T, asyncio.Future[R]]]]) -> None:
        assert self._ready is not None
        for batch in batches:
            self._ready.put_nowait(batch)
        self._schedule_deadline()

    def _schedule_deadline(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._core.next_deadline()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_deadline, deadline)

    def _on_deadline(self, deadline: float) -> None:
        # The loop may fire a timer up to its clock resolution early; the batch is due all the same.
        now = max(asyncio.get_running_loop().time(), deadline)
        self._timer = None
        self._release(self._core.poll(now))

    async def _run_batches(self) -> None:
        assert self._ready is not None
        loop = asyncio.get_running_loop()
        while (batch := await self._ready.get()) is not None:
            items = [item for item, _ in batch]
            try:
                results = await loop.run_in_executor(self._executor, self._fn, items)
                if len(results) != len(items):
                    raise ValueError(f"batch function returned {len(results)} results for {len(items)} items")
            except Exception as error:  # every waiter of this batch gets it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():  # a waiter may have been cancelled
                    future.set_result(result)
