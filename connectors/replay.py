"""Replaying JSONL/CSV files or folders of submissions, as fast as possible or at real-time × factor.

Each JSONL line is one item (its bytes are what a dead letter keeps). Each CSV row is one item: its
columns are the submission's fields, all strings (``media_urls`` is a space-separated list), and a
dead letter keeps the row as a JSON object. A folder is read recursively in name order. A video file given by name (``.mp4``, ``.webm``, …) is
one video item of ``video_user_id``, its event time the file's modification time.

At ``speed=k``, an item is sent ``(event_time - first event_time) / k`` seconds after the start;
``speed=None`` sends as fast as the producer takes them. Items whose time cannot be read are not
delayed (they become dead letters anyway).

>>> import tempfile
>>> from moodshift.connectors.producer import EventProducer, RecordingClient
>>> from moodshift.connectors.settings import ConnectorSettings
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "a.jsonl").write_text('{"event_id": "1", "user_id": "u", "event_time": "2024-01-01T00:00:00Z"}\\n{oops\\n')
>>> settings = ConnectorSettings(media_dir=folder / "media")
>>> ingestor = Ingestor(settings, EventProducer(settings, "replay", client=RecordingClient()), source="replay")
>>> replay([folder], ingestor, progress=False)
ReplayReport(accepted=1, rejected=1, by_reason={'malformed_json': 1})
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from moodshift.connectors.ingest import Ingestor
from moodshift.connectors.record import Rejected, parse_time
from moodshift.models.progress import progress_bar

SUFFIXES = (".jsonl", ".ndjson", ".csv")
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")


@dataclass(frozen=True)
class ReplayItem:
    """One item read from a file: its bytes, its fields when already parsed (CSV), its folder."""

    raw: bytes
    fields: dict | None
    base_dir: Path


@dataclass
class ReplayReport:
    """Counts of a replay: accepted, rejected, and rejections by reason."""

    accepted: int = 0
    rejected: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


def replay_files(paths: Iterable[Path]) -> list[Path]:
    """The files to replay: files as given, folders expanded recursively, in name order."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def read_items(files: Iterable[Path], video_user_id: str | None = None) -> Iterator[ReplayItem]:
    for path in files:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            if not video_user_id:
                raise ValueError(f"{path}: a video file needs a user id (--user-id)")
            mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
            fields = {"kind": "video", "event_id": f"file:{path.resolve()}:{mtime.timestamp():.0f}",
                      "user_id": video_user_id, "event_time": mtime.isoformat(), "path": path.name}
            yield ReplayItem(json.dumps(fields).encode(), fields, path.parent)
        elif path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as handle:
                for row in csv.DictReader(handle):
                    fields = {k: v for k, v in row.items() if k is not None and v != ""}
                    if "media_urls" in fields:
                        fields["media_urls"] = fields["media_urls"].split()
                    yield ReplayItem(json.dumps(row, ensure_ascii=False).encode(), fields, path.parent)
        else:
            with open(path, "rb") as handle:
                for line in handle:
                    if line.strip():
                        yield ReplayItem(line.rstrip(b"\r\n"), None, path.parent)


def count_items(files: Iterable[Path]) -> int:
    """Items in ``files`` (for the progress bar's total), without parsing them."""
    total = 0
    for path in files:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            total += 1
        elif path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as handle:
                total += sum(1 for _ in csv.DictReader(handle))
        else:
            with open(path, "rb") as handle:
                total += sum(1 for line in handle if line.strip())
    return total


def replay(
    paths: Iterable[Path], ingestor: Ingestor, *, default_kind: str = "post", speed: float | None = None,
    progress: bool = True, stop: threading.Event | None = None, video_user_id: str | None = None,
) -> ReplayReport:
    """Submit every item of ``paths`` to ``ingestor``; flush at the end (raising on delivery failures)."""
    files = replay_files(paths)
    stop = stop or threading.Event()
    report = ReplayReport()
    reasons: Counter[str] = Counter()
    pacer = Pacer(speed)
    with progress_bar(total=count_items(files) if progress else None, enabled=progress, unit="rec") as bar:
        for item in read_items(files, video_user_id):
            if stop.is_set():
                break
            delay = pacer.delay(_event_time_s(item) if speed is not None else None)
            if delay > 0:
                stop.wait(delay)
            if item.fields is None:
                outcome = ingestor.submit(item.raw, default_kind, item.base_dir)
            else:
                outcome = ingestor.submit_object(item.fields, item.raw, default_kind, item.base_dir)
            if outcome.accepted:
                report.accepted += 1
            else:
                report.rejected += 1
                reasons[outcome.reason or "unknown"] += 1
            bar.update()
    ingestor.producer.flush()
    report.by_reason = dict(reasons)
    return report


class Pacer:
    """Turns event-time gaps into wall-clock gaps divided by ``speed`` (None: as fast as possible).

    The first event sets the origin; each later one is due ``(event - first) / speed`` seconds after
    it. Replays (``--speed``) and the demo's live-like stream both pace with it.

    >>> pacer = Pacer(speed=3600.0)  # an hour of events per wall-clock second
    >>> pacer.delay(0.0), 0.0 < pacer.delay(1800.0) <= 0.5, Pacer(None).delay(1800.0)
    (0.0, True, 0.0)
    """

    def __init__(self, speed: float | None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed: must be positive")
        self.speed = speed
        self.first_event_s: float | None = None
        self.start = time.monotonic()

    def delay(self, event_s: float | None) -> float:
        """Seconds to wait before sending an event of time ``event_s`` (0 when due, unpaced or untimed)."""
        if self.speed is None or event_s is None:
            return 0.0
        if self.first_event_s is None:
            self.first_event_s, self.start = event_s, time.monotonic()
        return max(0.0, self.start + (event_s - self.first_event_s) / self.speed - time.monotonic())


def _event_time_s(item: ReplayItem) -> float | None:
    try:
        fields = item.fields if item.fields is not None else json.loads(item.raw)
        return parse_time(fields["event_time"]).timestamp()
    except (ValueError, KeyError, TypeError, Rejected):
        return None
