"""Where a running worker is: every asyncio task's chain of awaits and every thread's stack.

A worker that stops making progress without an error (a request that never returns, a lock never
released) shows nothing in its log. The worker serves :func:`stack_dump` at ``/debug/stacks`` so
that an operator, or a test that timed out, can see what each task is waiting for.

>>> import asyncio
>>> async def waits_for_a_reply():
...     await asyncio.sleep(60)
>>> async def main():
...     task = asyncio.create_task(waits_for_a_reply(), name="reply-waiter")
...     await asyncio.sleep(0)
...     dump = stack_dump()
...     task.cancel()
...     return dump
>>> dump = asyncio.run(main())
>>> "task reply-waiter" in dump and "in waits_for_a_reply" in dump
True
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import sys
import threading
import traceback
from types import FrameType
from typing import Any, Iterator


def stack_dump() -> str:
    """Text: each task of the running loop with the frames of its await chain, then each thread."""
    lines = []
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        lines.append(f"task {task.get_name()}:")
        lines += [f"  {location}" for location in _await_chain(task.get_coro())]
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        lines.append(f"thread {names.get(ident, ident)}:")
        lines += [f"  {entry.strip()}" for entry in traceback.format_stack(frame, limit=12)]
    return "\n".join(lines) + "\n"


def _await_chain(awaitable: Any) -> Iterator[str]:
    """``File, line, in function`` for each coroutine or generator the task is suspended in, outermost
    first, through the tasks it awaits."""
    seen = set()
    while awaitable is not None and id(awaitable) not in seen:
        seen.add(id(awaitable))
        if isinstance(awaitable, asyncio.Task):  # a task awaiting another task: follow it
            awaitable = awaitable.get_coro()
            continue
        frame: FrameType | None = (getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
                                   or getattr(awaitable, "ag_frame", None))
        if frame is not None:
            yield f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
            awaitable = (getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
                         or getattr(awaitable, "ag_await", None))
        else:  # a wrapper (a coroutine's __await__, a future's iterator) hides what it awaits: look inside
            awaitable = next((inner for inner in gc.get_referents(awaitable)
                              if inspect.iscoroutine(inner) or inspect.isgenerator(inner) or inspect.isasyncgen(inner)
                              or isinstance(inner, asyncio.Future)), None)
