"""Per-user state bytes: versioned, compact, exact."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import struct

from moodshift.models.state import UserStates


def random_state(layers: int, hidden: int, labels: int, steps: int, seed: int, history: int = 0) -> UserStates:
    generator = torch.Generator().manual_seed(seed)
    state = UserStates.zeros(1, layers, hidden, labels, history)
    for name in ("feature_h", "feature_c", "context_h", "context_c"):
        setattr(state, name, torch.randn(layers, 1, hidden, generator=generator))
    state.prev_emotion = torch.rand(1, labels, generator=generator) * 5
    state.prev_probs = torch.rand(1, history, labels, generator=generator).softmax(-1)
    state.steps = torch.tensor([steps])
    return state


@settings(max_examples=30, deadline=None)
@given(layers=st.integers(1, 3), hidden=st.integers(1, 32), labels=st.integers(2, 8),
       steps=st.integers(0, 2**40), seed=st.integers(0, 1000), history=st.integers(0, 4))
def test_float32_bytes_round_trip_exactly(layers, hidden, labels, steps, seed, history):
    state = random_state(layers, hidden, labels, steps, seed, history)
    blob = state.to_bytes()
    restored = UserStates.from_bytes(blob)
    assert restored.equal(state)
    assert restored.to_bytes() == blob


def test_float16_halves_the_payload_and_its_bytes_round_trip():
    state = random_state(2, 256, 3, 7, seed=0)
    full, half = state.to_bytes("float32"), state.to_bytes("float16")
    assert len(half) < 0.51 * len(full)
    restored = UserStates.from_bytes(half)
    assert restored.to_bytes("float16") == half
    assert (restored.feature_h - state.feature_h).abs().max() < 1e-2
    assert restored.steps.tolist() == [7]


def test_default_model_state_is_compact():
    assert len(random_state(2, 256, 3, 1, seed=0).to_bytes()) < 8 * 1024 + 64


@pytest.mark.parametrize("corrupt, message", [
    (lambda b: b"XXXX" + b[4:], "magic"),
    (lambda b: b[:4] + bytes([99]) + b[5:], "format version"),
    (lambda b: b[:-1], "bytes, expected"),
    (lambda b: b[:10], "truncated"),
])
def test_corrupt_bytes_are_refused(corrupt, message):
    with pytest.raises(ValueError, match=message):
        UserStates.from_bytes(corrupt(random_state(1, 4, 3, 1, seed=0).to_bytes()))


def test_only_single_users_serialise():
    with pytest.raises(ValueError, match="one user"):
        UserStates.zeros(2, 1, 4, 3).to_bytes()


def test_select_and_stack_are_inverse():
    states = UserStates.stack([random_state(2, 4, 3, i, seed=i) for i in range(4)])
    assert UserStates.stack([states.select(i) for i in range(4)]).equal(states)
    assert states.select([3, 1]).steps.tolist() == [3, 1]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_batch_serialises_as_its_users_do_one_by_one(dtype):
    states = UserStates.stack([random_state(2, 8, 3, i * 1000, seed=i) for i in range(5)])
    blobs = states.to_bytes_each(dtype)
    assert blobs == [states.select(i).to_bytes(dtype) for i in range(5)]
    restored = UserStates.from_bytes_each(blobs)
    assert UserStates.stack([UserStates.from_bytes(blob) for blob in blobs]).equal(restored)
    assert restored.to_bytes_each(dtype) == blobs
    assert all(getattr(restored, name).is_contiguous() for name in UserStates._RECURRENT)


def test_a_batch_reads_users_stored_in_either_dtype_but_not_of_other_shapes():
    full, half = random_state(2, 8, 3, 1, seed=0), random_state(2, 8, 3, 2, seed=1)
    restored = UserStates.from_bytes_each([full.to_bytes("float32"), half.to_bytes("float16")])
    assert restored.select(0).equal(full)
    assert restored.select(1).to_bytes("float16") == half.to_bytes("float16")
    with pytest.raises(ValueError, match="one shape"):
        UserStates.from_bytes_each([full.to_bytes(), random_state(2, 4, 3, 1, seed=0).to_bytes()])


def test_a_version_1_state_reads_as_one_without_reported_history_and_pads_to_a_models():
    state = random_state(2, 4, 3, 9, seed=3)
    # Version 1: the same header without its last field (history), the payload without reported probabilities.
    v1 = struct.pack("<4sBBHHHQ", b"MSUS", 1, 0, 2, 4, 3, 9) + state.to_bytes()[struct.calcsize("<4sBBHHHQH"):]
    assert UserStates.from_bytes(v1).equal(state)
    padded = UserStates.from_bytes_each([v1, random_state(2, 4, 3, 1, seed=4, history=2).to_bytes()], history=2)
    assert torch.equal(padded.prev_probs[0], torch.full((2, 3), 1 / 3))  # nothing known of them: uniform
    assert torch.equal(padded.feature_c[:, :1], state.feature_c) and padded.steps.tolist() == [9, 1]
    longer = random_state(2, 4, 3, 5, seed=5, history=3)
    assert torch.equal(UserStates.from_bytes_each([longer.to_bytes()], history=1).prev_probs, longer.prev_probs[:, :1])
