"""A `moodshift worker` subprocess for tests, configured like a deployment: environment variables
for the connection, ``--set`` for the rest."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from moodshift.pipeline.settings import Settings

# What the environment carries (where the cluster is); everything else goes through --set.
CONNECTION = ("bootstrap_servers", "topic_prefix", "partitions", "replication_factor", "state_dir")


class WorkerProcess:
    """``python -m moodshift.pipeline.cli worker`` with ``settings``; its output goes to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path, overrides: tuple[str, ...] = ()) -> None:
        self.settings, self.log_path, self.overrides = settings, log_path, overrides
        env = {f"MOODSHIFT_{name.upper()}": str(getattr(settings, name)) for name in CONNECTION}
        args = [f"--set={name}={getattr(settings, name)}" for name in overrides]
        self.process = subprocess.Popen([sys.executable, "-m", "moodshift.pipeline.cli", *args, "worker"],
                                        env=dict(os.environ, **env), stdout=open(log_path, "ab"),
                                        stderr=subprocess.STDOUT)
        self.stop_timed_out = False  # set by stop(): SIGTERM did not end it in time

    def alive(self) -> bool:
        return self.process.poll() is None

    def get(self, path: str) -> bytes:
        """A page of the worker's web server (/health, /metrics)."""
        url = f"http://127.0.0.1:{self.settings.worker_web_port}{path}"
        try:
            return urllib.request.urlopen(url, timeout=10).read()
        except urllib.error.HTTPError as error:  # /health answers 503 while starting
            return error.read()

    def wait_ready(self, timeout: float = 120) -> None:
        """Until /health says ready: the model is loaded and the context caught up."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.alive(), self.log_tail()
            try:
                if json.loads(self.get("/health")).get("ready"):
                    return
            except (OSError, ValueError):
                pass  # not listening yet
            assert time.monotonic() < deadline, f"worker not ready after {timeout} s:\n{self.log_tail()}"
            time.sleep(0.5)

    def metrics_summary(self) -> str:
        """The worker's own metrics (``moodshift_*`` samples of /metrics), for a test that times out:
        what it read, stepped, published and how far behind it is, beside its log."""
        if not self.alive():
            return f"(worker exited with {self.process.returncode})"
        try:
            page = self.get("/metrics").decode()
        except OSError as error:
            return f"(no /metrics: {error})"
        return "\n".join(line for line in page.splitlines() if line.startswith("moodshift_"))

    def stacks(self, chars: int = 12000) -> str:
        """What each of the worker's tasks and threads is waiting for (/debug/stacks, the first
        ``chars`` characters): for a worker that stalls without an error."""
        if not self.alive():
            return ""
        try:
            return self.get("/debug/stacks").decode()[:chars]
        except OSError as error:
            return f"(no /debug/stacks: {error})"

    def log_tail(self, chars: int = 6000) -> str:
        """The end of the worker's log, with warnings that repeat (faust's recovery warns every 5 s)
        folded into one line, so that what happened before them still fits."""
        return _fold_repeats(self.log_path.read_text(errors="replace").splitlines())[-chars:]

    def wait_exit(self, timeout: float) -> int:
        """Until the worker exits by itself; its exit code. One still running after ``timeout`` fails
        the test with what its tasks were waiting for (a stop that hangs)."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not exit within {timeout} s; its tasks:\n{self.stacks()}\n"
                                 f"its log:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no flush (a crash)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM and wait: faust's graceful shutdown (commits, leaves the group); SIGKILL after ``timeout``."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop_timed_out = True
                self.kill()


def _fold_repeats(lines: list[str]) -> str:
    """Lines that differ from an earlier one only in their digits (times, pids, ages) are counted, not
    kept: the first stays, and where the last was, one line says how many there were.

    >>> print(_fold_repeats(["[12:00:01] waiting 1 s", "start", "[12:00:06] waiting 6 s", "[12:00:11] waiting 11 s"]))
    [12:00:01] waiting 1 s
    start
    (2 more like the line "[12:00:01] waiting 1 s", the last: [12:00:11] waiting 11 s)
    """
    digits = re.compile(r"\d+")
    first: dict[str, str] = {}  # a line's shape → the first line of that shape
    last: dict[str, int] = {}  # a line's shape → where its last repeat was
    count: dict[str, int] = {}
    out: list[str | None] = []
    for line in lines:
        shape = digits.sub("#", line)
        if shape in first and line.strip():
            if shape in last:
                out[last[shape]] = None
            count[shape] = count.get(shape, 0) + 1
            last[shape] = len(out)
            out.append(f'({count[shape]} more like the line "{first[shape]}", the last: {line})')
        else:
            first[shape] = line
            out.append(line)
    return "\n".join(line for line in out if line is not None)
