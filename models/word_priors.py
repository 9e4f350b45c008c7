"""Fixed word features from a lexicon: what a word means before training has seen it.

The model's word vectors learn only from the training posts, so a word that is rare there (or a
domain's own vocabulary: "delayed", "refund") carries no emotion on a customer's posts. A sentiment
lexicon knows thousands of such words. Each source below gives every word it knows a few fixed
numbers; the model reads their mean over a post's words next to its own word vectors
(``ModelConfig.word_priors``).

Sources (installed packages, nothing downloaded):

- ``vader``: VADER's valence lexicon (7,500 words, emoticons and slang rated -4..4 by ten people)
  and its emoji lexicon (each emoji's description scored by VADER). Two columns: the valence scaled
  to [-1, 1], and 1 for a word the lexicon knows (so the mean also says how much of a post the
  lexicon covers).

How the words reach the model without the lexicon at serving time: :class:`TextHasher` puts,
before a post's word ids, one id per word in a second hashed space (``prior_buckets`` ids after
``text_buckets``); this table has one row per id of that space, filled where a lexicon word hashes,
zero elsewhere. The table travels inside the checkpoint (a frozen buffer), so a worker needs no
lexicon package. Two lexicon words that share an id (about 3% of VADER's at 2**18 ids) share the
sum of their rows.

>>> from moodshift.models.config import WORD_PRIOR_DIMS, ModelConfig
>>> from moodshift.models.text import TextHasher
>>> config = ModelConfig(text_buckets=1000, word_priors=("vader",))
>>> table = word_prior_table(config)
>>> table.shape == (config.prior_buckets, 2)
True
>>> hasher = TextHasher(config)
>>> good, bad = (table[hasher.prior_id(word) - config.text_buckets] for word in ("good", "horrible"))
>>> bool(good[0] > 0 > bad[0]), float(good[1]), float(bad[1])
(True, 1.0, 1.0)
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from moodshift.models.config import WORD_PRIOR_DIMS, ModelConfig
from moodshift.models.inputs import bag_index
from moodshift.models.text import PLACEHOLDERS, TextHasher, tokenize


def word_prior_table(config: ModelConfig) -> np.ndarray:
    """``[config.prior_buckets, config.word_prior_dim]`` float32: the columns of every source in
    ``config.word_priors``, in that order."""
    hasher = TextHasher(config)
    table = np.zeros((config.prior_buckets, config.word_prior_dim), np.float32)
    first = 0
    for source in config.word_priors:
        width = WORD_PRIOR_DIMS[source]
        for word, values in _SOURCES[source]().items():
            table[hasher.prior_id(word) - config.text_buckets, first:first + width] += values
        first += width
    return table


def mean_prior_features(ids: torch.Tensor, offsets: torch.Tensor, table: torch.Tensor,
                        first_prior_id: int) -> torch.Tensor:
    """[B, word_prior_dim]: the mean of ``table``'s rows over each bag's prior ids (ids from
    ``first_prior_id`` on, i.e. ``config.text_buckets``); zeros for a bag without any."""
    is_prior, bag = (ids >= first_prior_id).float(), bag_index(ids, offsets)
    count = torch.zeros(len(offsets), device=ids.device).index_add_(0, bag, is_prior)
    weights = is_prior / count.clamp(min=1)[bag]
    return F.embedding_bag((ids - first_prior_id).clamp(min=0), table, offsets, mode="sum", per_sample_weights=weights)


def known_word_valence(prior_means: torch.Tensor) -> torch.Tensor:
    """[B]: the mean ``vader`` valence of each bag's words that the lexicon knows (0 for none), from the
    bags' mean lexicon rows (:func:`mean_prior_features`): its valence column's mean over the
    known-word column's (the table's first two columns)."""
    return prior_means[:, 0] / prior_means[:, 1].clamp(min=1e-6)


def prior_direction(labels: Sequence[str], weight: float) -> torch.Tensor:
    """[labels]: ``weight`` with a sign per label, -1 for negative, +1 for positive, 0 for the rest.

    >>> prior_direction(("negative", "neutral", "positive"), 1.6).tolist()
    [-1.600000023841858, 0.0, 1.600000023841858]
    """
    return torch.tensor([weight * {"negative": -1.0, "positive": 1.0}.get(label, 0.0) for label in labels])


def with_lexicon_prior(probs: torch.Tensor, valence: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``probs`` ([..., labels]) with ``direction * valence`` added to their logarithms, renormalised:
    ``direction`` is the weight with a sign per label (+ for positive, - for negative, 0 else).

    >>> probs = torch.tensor([[0.3, 0.4, 0.3]])
    >>> moved = with_lexicon_prior(probs, torch.tensor([0.5]), torch.tensor([-2.0, 0.0, 2.0]))
    >>> [round(p, 3) for p in moved[0].tolist()]
    [0.083, 0.302, 0.615]
    """
    moved = probs.clamp(min=1e-12).log() + valence[..., None] * direction
    return moved.softmax(-1)


def _vader() -> dict[str, np.ndarray]:
    """Token → (valence in [-1, 1], 1) for VADER's words, emoticons and emoji."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyser = SentimentIntensityAnalyzer()
    valences: dict[str, list[float]] = defaultdict(list)
    entries = [(word, rating / 4.0) for word, rating in analyser.lexicon.items()]
    emoji = [(symbol, analyser.polarity_scores(description)["compound"])
             for symbol, description in analyser.emojis.items()]
    for entry, valence in [*entries, *emoji]:
        tokens = tokenize(entry)
        # As the tokenizer will see it: multi-token entries ("kiss-off") cannot match one id, and an
        # entry read as a placeholder ("143" and "187" are slang, "(8" an emoticon: "<num>") would
        # give every number in every post their mean valence.
        if len(tokens) == 1 and tokens[0] not in PLACEHOLDERS:
            valences[tokens[0]].append(valence)
    return {token: np.array([np.mean(values), 1.0], np.float32) for token, values in valences.items()}


_SOURCES = {"vader": _vader}
