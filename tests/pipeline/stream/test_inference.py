"""InferenceEngine: a batch of many users gives each user what stepping them alone would."""

from __future__ import annotations

import numpy as np
import pytest

from moodshift.models.config import ModelConfig
from moodshift.models.inputs import Step
from moodshift.models.model import build_model
from moodshift.models.state import UserStates
from moodshift.pipeline.stream.inference import InferenceEngine, StepRequest


@pytest.fixture(scope="module")
def engine() -> InferenceEngine:
    return InferenceEngine(build_model(ModelConfig(image_dim=4, hidden_size=8, common_dim=8), seed=0))


def step(k: int) -> Step:
    rng = np.random.default_rng(k)
    return Step(time=rng.standard_normal(6).astype(np.float32), text_ids=rng.integers(1, 500, 5).tolist())


def assert_same_state(one: bytes, other: bytes) -> None:
    """Equal up to float rounding: a batch's composition changes the order of the matrix sums."""
    a, b = UserStates.from_bytes(one), UserStates.from_bytes(other)
    for name in ("feature_h", "feature_c", "context_h", "context_c", "prev_emotion"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-5, atol=1e-6)
    assert a.steps.tolist() == b.steps.tolist()


def test_a_user_twice_in_one_call_steps_twice_in_order(engine: InferenceEngine) -> None:
    batched = engine.step([StepRequest("a", None, step(1)), StepRequest("b", None, step(2)),
                           StepRequest("a", None, step(3))])
    first = engine.step([StepRequest("a", None, step(1))])[0]
    second = engine.step([StepRequest("a", first.state, step(3))])[0]
    assert [r.user_id for r in batched] == ["a", "b", "a"]
    assert_same_state(batched[0].state, first.state)
    assert_same_state(batched[2].state, second.state)
    assert batched[2].state != first.state
    assert int(UserStates.from_bytes(batched[2].state).steps[0]) == 2
    np.testing.assert_allclose(batched[2].emotion, second.emotion, rtol=1e-5, atol=1e-6)


def test_many_users_in_one_call_match_each_user_alone(engine: InferenceEngine) -> None:
    states: dict[str, bytes | None] = {f"u{k}": None for k in range(12)}
    for round_ in range(3):
        requests = [StepRequest(user, state, step(100 * round_ + k)) for k, (user, state) in enumerate(states.items())]
        batched = engine.step(requests)
        for request, result in zip(requests, batched):
            (alone,) = engine.step([request])
            np.testing.assert_allclose(result.stage1_probs, alone.stage1_probs, rtol=1e-4, atol=1e-6)
            assert result.change_prob == pytest.approx(alone.change_prob, abs=1e-6)
            assert np.isclose(sum(result.stage1_probs), 1.0, atol=1e-5)
            states[request.user_id] = result.state
    assert {int(UserStates.from_bytes(s).steps[0]) for s in states.values()} == {3}


def test_float16_state_bytes_are_half_the_size(engine: InferenceEngine) -> None:
    half = InferenceEngine(engine.model, state_dtype="float16")
    full_bytes = engine.step([StepRequest("a", None, step(1))])[0].state
    half_bytes = half.step([StepRequest("a", None, step(1))])[0].state
    assert len(half_bytes) < 0.6 * len(full_bytes)
