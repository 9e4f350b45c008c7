"""Progress bars on a terminal, log lines everywhere else.

tqdm redraws its bar with carriage returns several times a second: on a terminal that is one line,
in a log file (systemd, CI, ``make demo > demo.log``) it is hundreds of fragments. Off a terminal
:func:`progress_bar` gives the same tqdm, with the same figures, written as one log line at most
every ``LOG_EVERY_SECONDS``.

>>> import io, logging
>>> stream = io.StringIO()
>>> handler = logging.StreamHandler(stream)
>>> logging.getLogger("moodshift.progress").addHandler(handler)
>>> logging.getLogger("moodshift.progress").setLevel(logging.INFO)  # `moodshift` configures INFO
>>> for _ in progress_bar(range(3), desc="epoch 1/2", interactive=False):
...     pass
>>> lines = stream.getvalue().splitlines()
>>> lines[-1].startswith("epoch 1/2: 100%") and "\\r" not in stream.getvalue()
True
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Iterable

from tqdm import tqdm

LOG_EVERY_SECONDS = 30.0

log = logging.getLogger("moodshift.progress")


class _LogLines:
    """A file for tqdm that turns each redraw into one log line."""

    def write(self, text: str) -> None:
        line = text.strip("\r\n ")
        if line:
            log.info(line)

    def flush(self) -> None:
        pass


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, interactive: bool | None = None,
                 **options: Any) -> tqdm:
    """A tqdm bar: drawn on a terminal, logged off one (``interactive`` None: whether stderr is a
    terminal), nothing when not ``enabled``. ``options`` go to tqdm (``desc``, ``total``, ``unit``).
    Update a postfix with ``set_postfix(..., refresh=False)``: a refresh is a line off a terminal."""
    if interactive is None:
        interactive = sys.stderr.isatty()
    if not enabled or interactive:
        return tqdm(iterable, disable=not enabled, **options)
    # mininterval and maxinterval: at most and at least one line per interval while it moves; leave:
    # the final figures are one last line (a bar that clears itself would log an empty one).
    options["leave"] = True
    return tqdm(iterable, file=_LogLines(), mininterval=LOG_EVERY_SECONDS, maxinterval=LOG_EVERY_SECONDS,
                ascii=True, ncols=100, **options)
