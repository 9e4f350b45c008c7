"""A linear text classifier over the model's own text ids, averaged into stage 1.

TF-IDF weights (sublinear term frequency, ids used by fewer than two training posts dropped, each
step's vector scaled to unit length) and, with the model's lexicon features (models/word_priors.py),
the mean of its words' lexicon rows as extra columns; a multinomial logistic regression over them,
as scikit-learn fits it on the training posts (:func:`fit_lexical`). The TF-IDF values come from
:meth:`LexicalClassifier.tfidf` in fitting and serving alike (scikit-learn gives the inverse document
frequencies and the regression), so the two cannot drift apart; serving needs only torch and the
fitted tensors, buffers of the model that travel in its checkpoint.

The lexicon columns carry what the lexicon knows of words the training posts never used (on airline
tweets, for a model trained on the other tweets, valence AUC 0.787 -> 0.814 fused, in domain
unchanged; docs/model/README.md).

Why: on a user's first posts the network, which has no history yet, classifies worse than a bag of
words fitted by convex optimisation, and the average of the two beats both (docs/model/README.md).
How much each step leans on the linear classifier (``share``) is tuned on validation data: one share
for a user's first step, one for later steps, where the network's history makes it stronger. A step
without text keeps the network's probabilities. Only the reported stage-1 probabilities are averaged;
the emotion vector, stage 2 and the stored state stay the network's.

>>> lexical = LexicalClassifier(buckets=8, n_labels=2)
>>> ids, offsets = torch.tensor([1, 1, 3]), torch.tensor([0, 2])
>>> lexical(ids, offsets).tolist()   # nothing fitted yet: every class equally likely
[[0.5, 0.5], [0.5, 0.5]]
>>> _ = lexical.share.copy_(torch.tensor([0.5, 0.0]))
>>> network = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
>>> lexical.fuse(network, lexical(ids, offsets), has_prev=torch.tensor([False, False]),
...              has_text=torch.tensor([True, False])).tolist()
[[0.75, 0.25], [1.0, 0.0]]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from moodshift.models.inputs import bag_index, concat_bags
from moodshift.models.word_priors import mean_prior_features

#: The inverse regularisation strength scikit-learn fits with (the TF-IDF + LR baseline's, models/baselines.py).
REGULARISATION_C = 4.0
#: An id used by fewer training posts than this gets no weight (TfidfVectorizer's ``min_df``).
MIN_POSTS = 2
#: The lexicon columns' scale. L2 regularisation holds a column's weight back; scaled up, the lexicon
#: is cheap to use (1 gave airline valence AUC 0.810 fused, 3 gave 0.814, 10 gave 0.815).
PRIOR_SCALE = 3.0


class LexicalClassifier(nn.Module):
    """TF-IDF + logistic regression over text ids ``0 .. buckets - 1`` and, with ``prior_dim``
    lexicon columns, the mean lexicon row of the prior ids (``buckets`` on); and its share of the
    fused stage-1 probabilities."""

    def __init__(self, buckets: int, n_labels: int, prior_dim: int = 0) -> None:
        super().__init__()
        self.buckets = buckets
        self.register_buffer("idf", torch.zeros(buckets))  # [buckets]; 0: an id without weight
        self.register_buffer("weight", torch.zeros(buckets, n_labels))
        self.register_buffer("prior_weight", torch.zeros(prior_dim, n_labels))
        self.register_buffer("bias", torch.zeros(n_labels))
        self.register_buffer("share", torch.zeros(2))  # [first step, later steps]; 0: the network alone

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, prior_means: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Class probabilities [B, labels] of B bags of ids (bags start at ``offsets``);
        ``prior_means``: each bag's mean lexicon row ([B, prior_dim], :func:`mean_prior_features`),
        needed with ``prior_dim``."""
        bag, token, value = self.tfidf(ids, offsets)
        logits = torch.zeros(len(offsets), len(self.bias), device=ids.device).index_add_(
            0, bag, value[:, None] * self.weight[token]) + self.bias
        if len(self.prior_weight):
            logits = logits + prior_columns(prior_means) @ self.prior_weight
        return logits.softmax(-1)

    def counts(self, ids: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(bag, id, count)``: how often each word id (below ``buckets``) occurs in each bag."""
        words = ids < self.buckets
        keys, counts = torch.unique(bag_index(ids, offsets)[words] * self.buckets + ids[words], return_counts=True)
        return keys // self.buckets, keys % self.buckets, counts

    def tfidf(self, ids: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(bag, id, value)``: the TF-IDF entries of each bag, (1 + ln count) * idf, of unit length per bag."""
        bag, token, counts = self.counts(ids, offsets)
        value = (1.0 + counts.float().log()) * self.idf[token]
        norm = torch.zeros(len(offsets), device=ids.device).index_add_(0, bag, value * value).sqrt()
        return bag, token, value / norm[bag].clamp(min=1e-12)

    def fuse(self, network_probs: torch.Tensor, lexical_probs: torch.Tensor, has_prev: torch.Tensor,
             has_text: torch.Tensor) -> torch.Tensor:
        """``(1 - s) * network + s * lexical`` per step ([..., labels]), ``s`` the first or later steps'
        share, 0 for a step without text."""
        share = torch.where(has_prev, self.share[1], self.share[0]) * has_text
        return network_probs + share[..., None] * (lexical_probs - network_probs)


def prior_columns(prior_means: torch.Tensor) -> torch.Tensor:
    """[B, prior_dim]: the lexicon columns, each bag's mean lexicon row scaled by :data:`PRIOR_SCALE`."""
    return PRIOR_SCALE * prior_means


def fit_lexical(classifier: LexicalClassifier, text_ids: Sequence[Sequence[int]], labels: np.ndarray,
                seed: int = 0, vocabulary_size: int = 0, prior_table: torch.Tensor | None = None) -> None:
    """Fit ``classifier``'s TF-IDF weights and logistic regression on posts' ids and labels (scikit-learn).
    With a vocabulary (models/text.py), only its ids get weights: a hashed id stands for whichever
    rare grams share it, and weights learned for them only add noise to the posts that bring unseen
    grams (the default preset's, alone on the test posts: 0.722 macro F1 with them, 0.735 without).
    ``prior_table``: the model's lexicon rows, for a classifier with ``prior_dim``. A label no post has
    gets a probability of about zero."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression

    buckets, posts = classifier.buckets, len(text_ids)
    ids, offsets = (tensor.to(classifier.idf.device) for tensor in concat_bags(text_ids))  # where the model is
    bag, token, counts = (tensor.cpu().numpy() for tensor in classifier.counts(ids, offsets))
    # scikit-learn's inverse document frequencies; an id without enough posts (or, with a vocabulary,
    # outside it) gets 0.
    idf = TfidfTransformer(sublinear_tf=True).fit(
        sp.csr_matrix((counts, (bag, token)), shape=(posts, buckets))).idf_
    used = np.bincount(token, minlength=buckets) >= MIN_POSTS
    if vocabulary_size:
        used[vocabulary_size:] = False
    with torch.no_grad():
        classifier.idf.copy_(torch.as_tensor(np.where(used, idf, 0.0), dtype=torch.float32))
    bag, token, value = (tensor.cpu().numpy() for tensor in classifier.tfidf(ids, offsets))
    features = sp.csr_matrix((value, (bag, token)), shape=(posts, buckets))
    prior_dim = len(classifier.prior_weight)
    if prior_dim:
        priors = prior_columns(mean_prior_features(ids, offsets, prior_table, buckets)).cpu().numpy()
        features = sp.hstack([features, sp.csr_matrix(priors)]).tocsr()
    regression = LogisticRegression(C=REGULARISATION_C, max_iter=2000, random_state=seed)
    regression.fit(features, labels)
    coef = np.zeros((len(classifier.bias), buckets + prior_dim), np.float32)  # [labels, columns]
    bias = np.full(len(classifier.bias), -30.0, np.float32)
    classes = regression.classes_
    if len(classes) == 2:  # scikit-learn keeps one row for two classes: the second class's logit
        coef[classes[1]], bias[classes] = regression.coef_[0], (0.0, regression.intercept_[0])
    else:
        coef[classes], bias[classes] = regression.coef_, regression.intercept_
    with torch.no_grad():
        classifier.weight.copy_(torch.as_tensor(coef[:, :buckets].T))
        classifier.prior_weight.copy_(torch.as_tensor(coef[:, buckets:].T))
        classifier.bias.copy_(torch.as_tensor(bias))
