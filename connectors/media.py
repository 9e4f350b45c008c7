"""A content-addressed media store: blobs named by their SHA-256, so Kafka carries only references.

The same bytes always land at the same path (``<root>/ab/abcdef…``), so storing twice costs nothing
and a reference stays valid for as long as the folder is kept. Writes are atomic (temp file + rename).

>>> import tempfile
>>> store = MediaStore(Path(tempfile.mkdtemp()))
>>> ref = store.put(b"\\x89PNG...", "image/png")
>>> ref.size_bytes, store.read(ref), store.path(ref).name == ref.sha256
(7, b'\\x89PNG...', True)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from moodshift.connectors.schemas import MediaRef
from moodshift.connectors.settings import ConnectorSettings


class MediaStore:
    """Puts and finds blobs under ``root``; the pipeline opens :class:`MediaRef` s with it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings: ConnectorSettings) -> "MediaStore":
        return cls(settings.media_dir or settings.state_dir / "media")

    def path(self, ref: MediaRef | str) -> Path:
        digest = ref if isinstance(ref, str) else ref.sha256
        return self.root / digest[:2] / digest

    def put(self, data: bytes, content_type: str, source_url: str | None = None) -> MediaRef:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, target)
        return MediaRef(sha256=digest, content_type=content_type, size_bytes=len(data), source_url=source_url)

    def put_file(self, source: Path, content_type: str) -> MediaRef:
        """Store a local file, hashing and copying it in chunks (videos can be large)."""
        digest = hashlib.sha256()
        self.root.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as src, tempfile.NamedTemporaryFile(dir=self.root, delete=False) as tmp:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                digest.update(chunk)
                tmp.write(chunk)
        target = self.path(digest.hexdigest())
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp.name, target)
        return MediaRef(sha256=digest.hexdigest(), content_type=content_type, size_bytes=target.stat().st_size)

    def open(self, ref: MediaRef) -> BinaryIO:
        return open(self.path(ref), "rb")

    def read(self, ref: MediaRef) -> bytes:
        return self.path(ref).read_bytes()

    def exists(self, ref: MediaRef) -> bool:
        return self.path(ref).exists()


