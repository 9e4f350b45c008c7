"""Model-level benchmarks, measured side by side in one process: ratios and medians, not absolutes.

1. incremental vs recompute: per-step cost of ``model.step`` from stored state vs re-running the
   LSTM over the user's whole history, at history lengths 10, 100, 1,000;
2. batched vs per-event: steps per second for N active users, one batched call per round vs one
   model call per user step;
3. memory: bytes of state per user (model state, float32 and float16; the worker's whole record);
   worker-like RSS growth with many users' records in a dict.
"""

from __future__ import annotations

import gc
import resource
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch

from moodshift.models.config import ModelConfig
from moodshift.models.inputs import SequenceInputs, Step, StepInputs
from moodshift.models.model import build_model
from moodshift.models.state import UserStates
from moodshift.pipeline.stream.inference import InferenceEngine, StepRequest
from moodshift.pipeline.stream.processor import EmotionProcessor, UserEvent
from moodshift.pipeline.stream.aggregate import ModalityFeatures
from moodshift.pipeline.stream.windows import WindowSpec


def _step(rng: np.random.Generator, config: ModelConfig) -> Step:
    return Step(
        time=rng.normal(size=config.time_dim).astype(np.float32),
        text_ids=rng.integers(0, config.text_buckets, 12).tolist(),
        context=rng.normal(size=(config.context_length, len(config.context_channels))).astype(np.float32),
    )


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def incremental_vs_recompute(config: ModelConfig, lengths: list[int], repeats: int) -> list[dict[str, Any]]:
    """Cost of one new step for a user with ``length`` steps of history, both ways."""
    torch.manual_seed(0)
    model = build_model(config, seed=0).eval()
    rng = np.random.default_rng(0)
    rows = []
    for length in lengths:
        history = [_step(rng, config) for _ in range(length)]
        sequence = SequenceInputs.collate([history], config)
        with torch.inference_mode():
            state = model.init_state(1)
            for step in history[:-1]:
                state, _ = model.step(state, StepInputs.collate([step], config))
        last = StepInputs.collate([history[-1]], config)

        def incremental() -> None:
            with torch.inference_mode():
                model.step(state, last)

        def recompute() -> None:
            with torch.inference_mode():
                model(sequence)

        inc = _median_seconds(incremental, repeats)
        rec = _median_seconds(recompute, max(1, repeats // (1 + length // 100)))
        rows.append({"history": length, "incremental_ms": inc * 1e3, "recompute_ms": rec * 1e3,
                     "speedup": rec / inc})
    return rows


def batched_vs_per_event(config: ModelConfig, users: list[int], budget_steps: int) -> list[dict[str, Any]]:
    """Steps per second with the engine's batching vs one model call per user step."""
    engine = InferenceEngine(build_model(config, seed=0))
    rng = np.random.default_rng(1)
    rows = []
    for n in users:
        requests = [StepRequest(f"u{i}", None, _step(rng, config)) for i in range(n)]
        states = {r.user_id: r for r in engine.step(requests)}  # every user has state now
        requests = [StepRequest(r.user_id, states[r.user_id].state, r.inputs) for r in requests]
        started = time.perf_counter()
        engine.step(requests)
        batched = n / (time.perf_counter() - started)
        single = requests[: max(1, min(n, budget_steps))]
        started = time.perf_counter()
        for request in single:
            engine.step([request])
        per_event = len(single) / (time.perf_counter() - started)
        rows.append({"users": n, "batched_steps_per_s": batched, "per_event_steps_per_s": per_event,
                     "speedup": batched / per_event})
    return rows


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def state_memory(config: ModelConfig, users: int) -> dict[str, Any]:
    """Bytes of state per user, and RSS growth for ``users`` worker records held in memory."""
    engine = InferenceEngine(build_model(config, seed=0))
    processor = EmotionProcessor(engine, WindowSpec(600_000, 60_000, 120_000))
    rng = np.random.default_rng(2)
    # One real record: a user after a few events, as the worker's table stores it (JSON).
    events = [UserEvent("u", f"e{i}", i * 50_000, ModalityFeatures(tokens=rng.integers(0, 99, 20).tolist()))
              for i in range(30)]
    record = processor.process(events, {}).records["u"]
    record_bytes = record.to_bytes()
    state = engine.step([StepRequest("u", None, _step(rng, config))])[0].state
    gc.collect()
    before = _rss_bytes()
    table = {f"user-{i}".encode(): bytes(bytearray(record_bytes)) for i in range(users)}  # distinct copies
    after = _rss_bytes()
    assert len(table) == users
    return {
        "model_state_bytes_float32": len(state),
        "model_state_bytes_float16": len(UserStates.from_bytes(state).to_bytes("float16")),
        "worker_record_bytes": len(record_bytes),
        "users_in_memory": users,
        "rss_growth_bytes": after - before,
        "rss_per_user_bytes": (after - before) / users,
    }
