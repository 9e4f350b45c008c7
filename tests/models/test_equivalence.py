"""Streaming equals training: stepping one event at a time gives the full-sequence forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moodshift.models.inputs import SequenceInputs, StepInputs
from moodshift.models.model import build_model
from moodshift.models.state import UserStates

from .helpers import TINY, random_sequences

OUTPUT_FIELDS = ("emotion", "stage1_logits", "change_logit", "transition_logits", "change_prob")


def step_through(model, sequences, state=None):
    """Outputs [B, T, ...] and final state from stepping all users together, one event at a time."""
    state = model.init_state(len(sequences)) if state is None else state
    outputs = []
    for t in range(len(sequences[0])):
        state, out = model.step(state, StepInputs.collate([seq[t] for seq in sequences], TINY))
        outputs.append(out)
    stacked = {name: torch.stack([getattr(o, name) for o in outputs], dim=1) for name in OUTPUT_FIELDS}
    if outputs[0].change_features is not None:
        stacked["change_features"] = torch.stack([o.change_features for o in outputs], dim=1)
    return stacked, state


@pytest.mark.parametrize("num_layers", [1, 2])
@torch.no_grad()
def test_stepping_equals_full_sequence_forward(num_layers):
    config = TINY.replace(num_layers=num_layers)
    model = build_model(config, seed=1).eval()
    sequences = random_sequences(np.random.default_rng(num_layers), users=5, length=12)
    full = model(SequenceInputs.collate(sequences, config))
    stepped, state = step_through(model, sequences)
    for name in OUTPUT_FIELDS:
        assert (stepped[name] - getattr(full, name)).abs().max() < 1e-5, name
    assert state.steps.tolist() == [12] * 5
    assert torch.equal(state.prev_emotion, stepped["emotion"][:, -1])


@torch.no_grad()
def test_forward_continues_from_a_given_state():
    """A sequence split in two (second half from the first half's state) equals the whole."""
    model = build_model(TINY, seed=2).eval()
    sequences = random_sequences(np.random.default_rng(2), users=3, length=8)
    whole = model(SequenceInputs.collate(sequences, TINY))
    _, state = step_through(model, [seq[:5] for seq in sequences])
    rest = model(SequenceInputs.collate([seq[5:] for seq in sequences], TINY), state)
    for name in OUTPUT_FIELDS:
        assert (getattr(rest, name) - getattr(whole, name)[:, 5:]).abs().max() < 1e-5, name


@torch.no_grad()
def test_padded_users_match_their_unpadded_forward():
    model = build_model(TINY, seed=3).eval()
    sequences = random_sequences(np.random.default_rng(3), users=3, length=9)
    sequences[1] = sequences[1][:4]
    padded = model(SequenceInputs.collate(sequences, TINY))
    alone = model(SequenceInputs.collate([sequences[1]], TINY))
    assert (padded.emotion[1, :4] - alone.emotion[0]).abs().max() < 1e-5


@torch.no_grad()
def test_users_stepped_together_equal_each_stepped_alone():
    model = build_model(TINY, seed=4).eval()
    sequences = random_sequences(np.random.default_rng(4), users=4, length=6)
    together, state = step_through(model, sequences)
    for user, sequence in enumerate(sequences):
        alone, alone_state = step_through(model, [sequence])
        for name in OUTPUT_FIELDS:
            assert (alone[name][0] - together[name][user]).abs().max() < 1e-5, name
        assert (alone_state.feature_h[:, 0] - state.feature_h[:, user]).abs().max() < 1e-5


@torch.no_grad()
def test_states_gathered_from_different_batches_step_like_the_original_batch():
    """The pipeline regroups users between steps: select/stack must not mix rows up."""
    model = build_model(TINY, seed=5).eval()
    sequences = random_sequences(np.random.default_rng(5), users=4, length=5)
    _, state = step_through(model, [seq[:3] for seq in sequences])
    order = [2, 0, 3, 1]
    regrouped = UserStates.stack([state.select(i) for i in order])
    reference, _ = step_through(model, [seq[3:] for seq in sequences], state)
    shuffled, _ = step_through(model, [sequences[i][3:] for i in order], regrouped)
    assert torch.allclose(shuffled["emotion"], reference["emotion"][order], atol=1e-6)


@torch.no_grad()
def test_state_through_bytes_continues_identically():
    model = build_model(TINY, seed=6).eval()
    sequences = random_sequences(np.random.default_rng(6), users=1, length=6)
    _, state = step_through(model, [sequences[0][:3]])
    restored = UserStates.from_bytes(state.to_bytes())
    direct, _ = step_through(model, [sequences[0][3:]], state)
    via_bytes, _ = step_through(model, [sequences[0][3:]], restored)
    for name in OUTPUT_FIELDS:
        assert torch.equal(direct[name], via_bytes[name]), name


@torch.no_grad()
def test_the_evaluation_of_stored_state_streams_like_the_forward():
    """``run_streamed`` (the serving path: a step per post, state stored as bytes between steps)
    gives the full forward's outputs with float32 state; float16 state stays close, not equal."""
    from types import SimpleNamespace

    from moodshift.models.evaluate import run_streamed

    model = build_model(TINY, seed=6).eval()
    sequences = random_sequences(np.random.default_rng(6), users=4, length=10)
    sequences[2] = sequences[2][:6]  # users' timelines differ in length
    full = model(SequenceInputs.collate(sequences, TINY))
    timelines = [SimpleNamespace(steps=sequence) for sequence in sequences]
    exact = run_streamed(model, timelines, "float32")
    half = run_streamed(model, timelines, "float16")
    for user, sequence in enumerate(sequences):
        n = len(sequence)
        assert exact.stage1[user].shape == (n, TINY.n_labels)
        assert np.abs(exact.stage1[user] - full.stage1_probs[user, :n].numpy()).max() < 1e-5
        assert np.abs(exact.change[user] - full.change_prob[user, :n].numpy()).max() < 1e-5
        assert np.abs(half.stage1[user] - exact.stage1[user]).max() < 1e-2
    assert any(np.abs(h - e).max() > 0 for h, e in zip(half.stage1, exact.stage1))  # float16 does round


@torch.no_grad()
def test_the_fitted_change_classifier_reads_the_same_history_stepping_and_in_the_forward():
    """Its features at step t read the reported stage 1 of steps t-1, t-2 (or the state's, before
    the sequence): stepped, in one forward, and split in two, they agree."""
    config = TINY.replace(change_history=2)
    model = build_model(config, seed=6).eval()
    classifier = model.change_classifier
    classifier.weight.copy_(torch.randn(classifier.n_features, generator=torch.Generator().manual_seed(0)))
    classifier.mark_fitted()
    sequences = random_sequences(np.random.default_rng(6), users=3, length=7)
    full = model(SequenceInputs.collate(sequences, config))
    stepped, state = step_through(model, sequences)
    for name in (*OUTPUT_FIELDS, "change_features"):
        assert (stepped[name] - getattr(full, name)).abs().max() < 1e-5, name
    assert not torch.allclose(full.change_prob, full.change_logit.sigmoid())  # the classifier's, not the network's
    assert torch.allclose(state.prev_probs, full.stage1_probs[:, [-1, -2]], atol=1e-6)  # the latest first
    _, first = step_through(model, [seq[:4] for seq in sequences])
    rest = model(SequenceInputs.collate([seq[4:] for seq in sequences], config), first)
    assert (rest.change_features - full.change_features[:, 4:]).abs().max() < 1e-5
    # A first step has no history: its lags are marked missing and read as zeros.
    assert full.change_features[:, 0, config.n_labels + 2:].abs().max() == 0
