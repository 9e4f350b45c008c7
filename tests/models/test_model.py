"""Properties of the model that the method requires."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from moodshift.models.inputs import SequenceInputs, Step, StepInputs
from moodshift.models.loss import Targets, moodshift_loss
from moodshift.models.model import build_model

from .helpers import TINY, random_sequences


def test_emotion_vector_is_non_negative_even_for_extreme_inputs():
    model = build_model(TINY, seed=0).eval()
    sequences = [[dataclasses.replace(step, time=step.time * 1e4) for step in seq]
                 for seq in random_sequences(np.random.default_rng(0), users=4, length=5)]
    out = model(SequenceInputs.collate(sequences, TINY))
    assert (out.emotion >= 0).all()
    assert torch.allclose(out.transition_probs.sum((-1, -2)), torch.ones(4, 5))


def test_recurrent_initialisation():
    model = build_model(TINY.replace(hidden_size=12), seed=0)
    for lstm in (model.feature_lstm, model.context_lstm):
        block = lstm.weight_hh_l0[12:24]  # forget gate's recurrent block
        assert torch.allclose(block @ block.T, torch.eye(12), atol=1e-5)
        assert torch.all(lstm.bias_ih_l0[12:24] + lstm.bias_hh_l0[12:24] == 1.0)
        assert torch.all(lstm.bias_ih_l0[:12] + lstm.bias_hh_l0[:12] == 0.0)


def test_a_missing_modality_is_not_the_same_as_zeros():
    model = build_model(TINY, seed=0).eval()
    missing = Step(time=np.zeros(6, np.float32))
    zeros = Step(time=missing.time, image=np.zeros(TINY.image_dim), audio=np.zeros(TINY.audio_dim))
    with torch.no_grad():
        model.image_proj.missing.fill_(0.3)
        _, a = model.step(model.init_state(1), StepInputs.collate([missing], TINY))
        _, b = model.step(model.init_state(1), StepInputs.collate([zeros], TINY))
    assert not torch.allclose(a.emotion, b.emotion)


def test_one_training_step_reduces_the_loss_on_its_batch():
    model = build_model(TINY.replace(dropout=0.0), seed=0)
    rng = np.random.default_rng(0)
    sequences = random_sequences(rng, users=6, length=7)
    inputs = SequenceInputs.collate(sequences, TINY)
    targets = Targets.collate([[(int(rng.integers(3)), 1.0, 0, 0) for _ in seq] for seq in sequences], 3)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    before, _ = moodshift_loss(model(inputs), targets, TINY)
    for _ in range(5):
        optimiser.zero_grad()
        loss, _ = moodshift_loss(model(inputs), targets, TINY)
        loss.backward()
        optimiser.step()
    after, _ = moodshift_loss(model(inputs), targets, TINY)
    assert after < before


def test_padding_does_not_leak_into_the_loss():
    model = build_model(TINY, seed=0).eval()
    sequences = random_sequences(np.random.default_rng(1), users=2, length=4)
    sequences[1] = sequences[1][:2]
    rows = [[(0, 1.0, 0, 0)] * len(s) for s in sequences]
    with torch.no_grad():
        out = model(SequenceInputs.collate(sequences, TINY))
        loss, _ = moodshift_loss(out, Targets.collate(rows, 3), TINY)
        out.emotion[1, 2:] = 1e6  # garbage at padded steps must not matter
        out.stage1_logits[1, 2:] = 1e6
        assert torch.equal(moodshift_loss(out, Targets.collate(rows, 3), TINY)[0], loss)


def test_text_bags_are_means_and_word_dropout_only_hides_words_in_training():
    model = build_model(TINY.replace(word_dropout=0.5), seed=0)
    ids = torch.tensor([1, 2, 3, 4, 5, 6, 7])
    offsets = torch.tensor([0, 3, 3, 3, 5, 7, 7])  # empty bags in the middle and at the end
    mean = torch.nn.functional.embedding_bag(ids, model.text_embedding.weight, offsets, mode="mean")
    assert torch.allclose(model.eval().embed_text(ids, offsets, None), mean, atol=1e-6)
    torch.manual_seed(0)
    dropped = model.train().embed_text(ids, offsets, None)
    assert torch.equal(dropped[[1, 2, 5, 6]], torch.zeros(4, TINY.text_dim))  # empty stays empty
    vectors = model.text_embedding.weight[ids]
    for bag, (start, end) in enumerate([(0, 3), (3, 5), (5, 7)]):
        row = dropped[[0, 3, 4][bag]]
        # Each kept bag is the mean of a subset of its own words (or empty if all were hidden).
        subsets = [vectors[start:end][mask].mean(0) for mask in
                   ([bool(b >> i & 1) for i in range(end - start)] for b in range(1, 2 ** (end - start)))]
        assert any(torch.allclose(row, s, atol=1e-6) for s in subsets) or torch.equal(row, torch.zeros_like(row))
