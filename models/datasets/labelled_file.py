"""Anyone's labelled posts, from a CSV or JSON-lines file, for ``moodshift evaluate --posts``.

A file has one post per row (CSV, with a header) or per line (JSON lines: one object each), with a
text field and a label field (``text`` and ``label`` unless told otherwise). A label is mapped to one
of the model's labels: each model label maps to itself, and by default ``neg``/``neu``/``pos``
(any case) to ``negative``/``neutral``/``positive``; ``label_map`` adds or overrides entries (e.g.
Sentiment140's ``0`` → ``negative``, ``4`` → ``positive``). A label outside the mapping, a row
without text or a line that is not JSON is an error that names the row, so nothing is scored on a
silently shrunken file. A file may lack a label (two-class data): every other label it has is used.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "mine.csv"
>>> _ = path.write_text("review,stars\\nGreat service!,5\\nNever again.,1\\nGreat service!,5\\n")
>>> posts = load_labelled_posts(path, text_field="review", label_field="stars",
...                             label_map={"5": "positive", "1": "negative"})
>>> [(p.text, p.label) for p in posts]  # a repeated text is kept once
[('Great service!', 2), ('Never again.', 0)]
>>> load_labelled_posts(path, text_field="review", label_field="stars")
Traceback (most recent call last):
...
ValueError: mine.csv: labels outside the mapping: '5' (2 rows), '1' (1 row); map them with --label-map RAW=LABEL (labels: negative, neutral, positive)
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from moodshift.models.config import DEFAULT_LABELS
from moodshift.models.datasets.posts import Post

SHORT_NAMES = {"neg": "negative", "neu": "neutral", "pos": "positive"}


def label_mapping(labels: Sequence[str], extra: Mapping[str, str] | None = None) -> dict[str, int]:
    """Raw label (lower case, trimmed) → index into ``labels``.

    >>> label_mapping(("negative", "neutral", "positive"), {"0": "negative"})["0"], label_mapping(DEFAULT_LABELS)["POS".lower()]
    (0, 2)
    """
    index = {label: i for i, label in enumerate(labels)}
    mapping = {label.lower(): i for label, i in index.items()}
    mapping.update({short: index[full] for short, full in SHORT_NAMES.items() if full in index})
    for raw, label in (extra or {}).items():
        if label not in index:
            raise ValueError(f"--label-map {raw}={label}: {label!r} is not one of the model's labels "
                             f"({', '.join(labels)})")
        mapping[raw.strip().lower()] = index[label]
    return mapping


def load_labelled_posts(path: Path, *, text_field: str = "text", label_field: str = "label",
                        label_map: Mapping[str, str] | None = None,
                        labels: Sequence[str] = DEFAULT_LABELS) -> list[Post]:
    """Every distinct text of the file with its mapped label, in file order (confidence 1)."""
    path = Path(path)
    mapping = label_mapping(labels, label_map)
    posts: list[Post] = []
    seen: set[str] = set()
    unmapped: Counter[str] = Counter()
    for row_name, row in _rows(path):
        text, raw = row.get(text_field), row.get(label_field)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path.name}: {row_name} has no text in field {text_field!r}")
        if raw is None or str(raw).strip() == "":
            raise ValueError(f"{path.name}: {row_name} has no label in field {label_field!r}")
        key = str(raw).strip().lower()
        if key not in mapping:
            unmapped[str(raw).strip()] += 1
            continue
        text = text.strip()
        if text not in seen:
            seen.add(text)
            posts.append(Post(text, mapping[key], 1.0))
    if unmapped:
        listed = ", ".join(f"{raw!r} ({n} row{'s' * (n != 1)})" for raw, n in unmapped.most_common())
        raise ValueError(f"{path.name}: labels outside the mapping: {listed}; map them with "
                         f"--label-map RAW=LABEL (labels: {', '.join(labels)})")
    present = {post.label for post in posts}
    if len(present) < 2:
        raise ValueError(f"{path.name}: needs posts of at least two labels, has {sorted(present) or 'none'}")
    return posts


def _rows(path: Path) -> Iterator[tuple[str, dict]]:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path.name}: line {number} is not JSON ({error.msg})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path.name}: line {number} is not a JSON object")
                yield f"line {number}", row
    elif path.suffix.lower() in (".csv", ".tsv"):
        with open(path, encoding="utf-8", newline="") as handle:
            dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
            for number, row in enumerate(csv.DictReader(handle, dialect=dialect), 2):
                yield f"row {number}", row
    else:
        raise ValueError(f"{path.name}: expected .csv, .tsv, .jsonl or .ndjson")
