"""Weak labels for the named emotions: nade's scores of Plutchik's eight emotions per post.

No human labels for named emotions ship offline, so the model's named dimensions learn from a weak
labeller: nade 0.3.1 (MIT; fastText emoji predictions + one LightGBM regressor per emotion, trained
on social-media text; ``pip install 'moodshift[data]'``). Its scores are in [0, 1]. Scoring the
38k training posts takes about a minute on 2 cores, so the scores are cached in a ``.npy`` file
named by a hash of the texts and the labeller's version.

>>> scores = WeakLabeller(("joy", "sadness")).scores(["What a wonderful day!", "I miss her so much"])
>>> scores.shape, bool(scores[0, 0] > scores[1, 0]), bool(scores[1, 1] > scores[0, 1])
((2, 2), True, True)
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
import warnings
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

#: Texts per call to nade (its fastText and LightGBM calls are batched).
_CHUNK = 2048


class WeakLabeller:
    """nade's scores for ``emotions`` (a subset of Plutchik's eight), one row per text."""

    def __init__(self, emotions: Sequence[str], cache_dir: Path | None = None) -> None:
        self.emotions = tuple(emotions)
        self.cache_dir = cache_dir

    @cached_property
    def _nade(self):
        try:
            from nade import Nade
        except ModuleNotFoundError as missing:
            raise ModuleNotFoundError("nade is not installed: pip install 'moodshift[data]'") from missing
        with warnings.catch_warnings():  # it says "unpack ... model" once per emotion on first use
            warnings.simplefilter("ignore", UserWarning)
            labeller = Nade()
        unknown = set(self.emotions) - set(labeller.labels)
        if unknown:
            raise ValueError(f"nade does not score {sorted(unknown)}; it scores {labeller.labels}")
        return labeller

    @property
    def version(self) -> str:
        return f"nade-{importlib.metadata.version('nade')}"

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), len(emotions)]`` float32 scores, from the cache when it has them."""
        path = self._cache_path(texts)
        if path is not None and path.exists():
            return np.load(path)
        rows = [self._score_chunk(texts[start:start + _CHUNK]) for start in range(0, len(texts), _CHUNK)]
        scores = np.concatenate(rows) if rows else np.zeros((0, len(self.emotions)), np.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(dir=path.parent, suffix=".npy")
            with os.fdopen(handle, "wb") as file:
                np.save(file, scores)
            os.replace(partial, path)  # a crash never leaves half a cache file
        return scores

    def _score_chunk(self, texts: Sequence[str]) -> np.ndarray:
        # nade's preprocessing splits on newlines; one text must stay one line.
        predicted = self._nade.predict([" ".join(text.split()) for text in texts], dimensions=list(self.emotions))
        columns = [np.asarray([float(value) for value in predicted[name]], np.float32) for name in self.emotions]
        return np.clip(np.stack(columns, axis=1), 0.0, 1.0)

    def _cache_path(self, texts: Sequence[str]) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256()
        digest.update(f"{self.version}\t{','.join(self.emotions)}\n".encode())
        for text in texts:
            digest.update(text.encode() + b"\n")
        return Path(self.cache_dir) / f"{self.version}-{digest.hexdigest()[:16]}.npy"
