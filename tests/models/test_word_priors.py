"""The lexicon's fixed word features: hashed apart from the word vectors, read as a mean, carried by
the checkpoint, and left alone by training."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from moodshift.models.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from moodshift.models.inputs import SequenceInputs, Step
from moodshift.models.loss import Targets, moodshift_loss
from moodshift.models.model import build_model
from moodshift.models.text import TextHasher, tokenize
from moodshift.models.word_priors import _vader, word_prior_table

from .helpers import TINY

WITH_PRIORS = TINY.replace(word_priors=("vader",))


def test_a_post_gets_one_prior_id_per_word_after_the_word_vector_ids():
    text = "What a horrible, horrible delay :( @united"
    plain, with_priors = TextHasher(TINY).encode(text), TextHasher(WITH_PRIORS).encode(text)
    words = tokenize(text)
    priors = with_priors[:len(words)]
    assert all(TINY.text_buckets <= i < TINY.text_buckets + WITH_PRIORS.prior_buckets for i in priors)
    assert priors[2] == priors[3]  # the same word, the same id
    assert with_priors[len(words):] == plain  # the word vectors' ids do not change


def test_the_table_holds_each_lexicon_word_where_it_hashes():
    table = word_prior_table(WITH_PRIORS)
    hasher = TextHasher(WITH_PRIORS)
    row = lambda word: table[hasher.prior_id(word) - WITH_PRIORS.text_buckets]  # noqa: E731
    assert row("horrible")[0] < -0.5 and row("wonderful")[0] > 0.5 and row(":(")[0] < 0
    assert row("😍")[0] > 0  # emoji: VADER's score of its description
    assert row("horrible")[1] == 1.0
    assert (table[:, 1] > 0).sum() > 3000  # most of VADER's 7,500 entries are single tokens
    # Slang and emoticons read as "<num>" ("143", "(8") must not give every number a valence.
    assert not row("<num>").any() and not row("<url>").any()


def _model_with_table():
    model = build_model(WITH_PRIORS, seed=0)
    model.word_prior_table.copy_(torch.as_tensor(word_prior_table(WITH_PRIORS)))
    return model


def test_the_text_vector_is_the_word_vectors_mean_then_the_lexicon_mean():
    model = _model_with_table().eval()
    hasher = TextHasher(WITH_PRIORS)
    texts = ["so happy today :)", "", "awful awful service"]
    bags = [hasher.encode(text) for text in texts]
    ids = torch.tensor([i for bag in bags for i in bag])
    offsets = torch.tensor(np.cumsum([0] + [len(bag) for bag in bags[:-1]]))
    text = model.embed_text(ids, offsets, model.lexicon_means(ids, offsets))
    assert text.shape == (3, WITH_PRIORS.text_dim + 2)
    for row, (words_text, bag) in enumerate(zip(texts, bags)):
        words = [i for i in bag if i < WITH_PRIORS.text_buckets]
        priors = [i - WITH_PRIORS.text_buckets for i in bag if i >= WITH_PRIORS.text_buckets]
        expected_words = model.text_embedding.weight[words].mean(0) if words else torch.zeros(WITH_PRIORS.text_dim)
        expected_priors = model.word_prior_table[priors].mean(0) if priors else torch.zeros(2)
        assert torch.allclose(text[row, :-2], expected_words, atol=1e-6), words_text
        assert torch.allclose(text[row, -2:], expected_priors, atol=1e-6), words_text
    assert text[2, -2] < 0 < text[0, -2]  # "awful" against "happy" and ":)"
    # Word dropout hides word vectors in training, never the lexicon's fixed features.
    torch.manual_seed(0)
    trained_on = model.train().embed_text(ids, offsets, model.lexicon_means(ids, offsets))
    assert torch.allclose(trained_on[:, -2:], text[:, -2:], atol=1e-6)
    assert not torch.allclose(trained_on[:, :-2], text[:, :-2])


def test_training_leaves_the_table_and_the_checkpoint_carries_it(tmp_path):
    model = _model_with_table().train()
    table = model.word_prior_table.clone()
    hasher = TextHasher(WITH_PRIORS)
    steps = [[Step(time=np.zeros(6, np.float32), text_ids=hasher.encode(text))]
             for text in ("love it", "hate it", "fine")]
    targets = Targets.collate([[(2, 1.0, 0, 8)], [(0, 1.0, 0, 0)], [(1, 1.0, 0, 4)]], n_labels=3)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    loss, _ = moodshift_loss(model(SequenceInputs.collate(steps, WITH_PRIORS)), targets, WITH_PRIORS)
    loss.backward()
    optimiser.step()
    assert torch.equal(model.word_prior_table, table)
    assert all(parameter is not model.word_prior_table for parameter in model.parameters())

    path = tmp_path / "model.pt"
    save_checkpoint(path, model, CheckpointMeta.create(WITH_PRIORS, training_data_hash="x", random_backbone=True))
    loaded, meta = load_checkpoint(path)
    assert torch.equal(loaded.word_prior_table, table)
    assert meta.text_hashing["word_priors"] == ["vader"]
    # A model without lexicon features has no table at all: checkpoints made before it still load.
    assert "word_prior_table" not in build_model(TINY).state_dict()


def test_the_lexicon_prior_moves_reported_valence_by_the_known_words_and_nothing_else(tmp_path):
    """With ``lexicon_prior_weight`` w, stage 1's reported log-odds of positive over negative rise by
    2 w times the mean valence of the step's known words; the network's own outputs do not change,
    a step without known words is reported as before, and the weight travels in the checkpoint."""
    weight = 1.5
    plain = _model_with_table().eval()
    config = replace(WITH_PRIORS, lexicon_prior_weight=weight)
    moved = build_model(config)
    moved.load_state_dict(plain.state_dict())
    moved.eval()
    hasher = TextHasher(config)
    texts = ["so happy today :)", "awful awful service", "the bus leaves at 7:40", ""]
    steps = [[Step(time=np.zeros(6, np.float32), text_ids=hasher.encode(text) or None)] for text in texts]
    inputs = SequenceInputs.collate(steps, config)
    before, after = plain(inputs), moved(inputs)
    assert torch.equal(before.stage1_logits, after.stage1_logits) and torch.equal(before.emotion, after.emotion)
    negative, positive = config.labels.index("negative"), config.labels.index("positive")

    def log_odds(outputs):
        probs = outputs.stage1_probs[:, 0]
        return (probs[:, positive] / probs[:, negative]).log()

    lexicon = {token: row for token, row in _vader().items()}
    for row, text in enumerate(texts):
        known = [lexicon[token][0] for token in tokenize(text) if token in lexicon]
        valence = float(np.mean(known)) if known else 0.0
        assert float((log_odds(after)[row] - log_odds(before)[row]).detach()) == pytest.approx(2 * weight * valence, abs=1e-3), text
    assert log_odds(after)[0] > log_odds(before)[0] and log_odds(after)[1] < log_odds(before)[1]
    assert torch.allclose(after.stage1_probs[2:], before.stage1_probs[2:])  # no lexicon word, no text

    path = tmp_path / "model.pt"
    save_checkpoint(path, moved, CheckpointMeta.create(config, training_data_hash="x", random_backbone=True))
    loaded, _ = load_checkpoint(path)
    assert loaded.config.lexicon_prior_weight == weight
    assert torch.allclose(loaded.eval()(inputs).stage1_probs, after.stage1_probs)


def test_the_lexicon_prior_needs_vader_and_a_valence_label_set():
    with pytest.raises(ValueError, match="lexicon_prior_weight"):
        replace(TINY, lexicon_prior_weight=1.0)
    with pytest.raises(ValueError, match="lexicon_prior_weight"):
        replace(WITH_PRIORS, labels=("calm", "upset"), lexicon_prior_weight=1.0)
