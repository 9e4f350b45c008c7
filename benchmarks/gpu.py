"""GPU throughput, for a CUDA machine: ``python -m benchmarks.gpu --out benchmarks/results/gpu.json``.

1. **ResNet-101 features** (the method's image backbone, ``models.image.ImageEncoder``'s trunk):
   images per second at batch sizes 1, 8, 32, 128, in fp32 and under bf16 and fp16 autocast, all
   ``channels_last`` (as the worker runs it on CUDA), on 224×224 inputs already on the device;
2. **batched incremental LSTM steps** (``MoodshiftModel.step``, the method's shapes) for 10,000,
   100,000 and 1,000,000 users, every user's state resident on the device, stepped in chunks of at
   most ``chunk`` users per call, fp32 and bf16 autocast: steps per second;
3. the same steps through :class:`pipeline.stream.inference.InferenceEngine` (state bytes in and out, inputs
   collated on the CPU, as the worker calls it) for 10,000 users: what the worker can get.

Weights are randomly initialised (nothing is downloaded): throughput does not depend on them.
Without a CUDA device it prints and writes ``{"skipped": "no CUDA device"}`` and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from moodshift.models.config import ModelConfig
from moodshift.models.image import ImageEncoder
from moodshift.models.inputs import Step, StepInputs
from moodshift.models.model import build_model
from moodshift.pipeline.stream.inference import InferenceEngine, StepRequest

SIZES = {
    # tiny: the smoke test runs the same code on the CPU in seconds; full: a GPU run (~2 minutes).
    "tiny": dict(batches=[1], image_modes=["fp32", "bf16"], users=[64, 256], chunk=128, step_modes=["fp32"],
                 engine_users=64, seconds=0.2),
    "full": dict(batches=[1, 8, 32, 128], image_modes=["fp32", "bf16", "fp16"], users=[10_000, 100_000, 1_000_000],
                 chunk=131_072, step_modes=["fp32", "bf16"], engine_users=10_000, seconds=2.0),
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, mode: str) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if mode == "fp32" else torch.autocast(device.type, dtype=DTYPES[mode])


def per_second(fn: Callable[[], int], device: torch.device, seconds: float) -> float:
    """Items per second of ``fn`` (which returns how many items it handled), after two warm-up calls."""
    for _ in range(2):
        fn()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    items, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        items += fn()
    sync()
    return items / (time.perf_counter() - started)


def resnet_throughput(device: torch.device, batches: list[int], modes: list[str], seconds: float) -> list[dict]:
    trunk = ImageEncoder("resnet101", weights=None, allow_random=True, device=device).trunk
    trunk = trunk.to(memory_format=torch.channels_last)
    rows = []
    for batch in batches:
        images = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
        for mode in modes:
            def encode() -> int:
                with torch.inference_mode(), autocast(device, mode):
                    trunk(images)
                return batch

            rows.append({"batch": batch, "mode": mode, "images_per_s": per_second(encode, device, seconds)})
    return rows


def random_steps(config: ModelConfig, n: int, device: torch.device, tokens: int = 12) -> StepInputs:
    """Inputs for ``n`` user steps, built as tensors (collating a million dicts would time Python)."""
    generator = torch.Generator().manual_seed(0)
    return StepInputs(
        text_ids=torch.randint(0, config.text_buckets, (n * tokens,), generator=generator),
        text_offsets=torch.arange(n) * tokens, text_mask=torch.ones(n, dtype=torch.bool),
        image=torch.randn(n, config.image_dim, generator=generator), image_mask=torch.ones(n, dtype=torch.bool),
        audio=torch.zeros(n, config.audio_dim), audio_mask=torch.zeros(n, dtype=torch.bool),
        time=torch.randn(n, config.time_dim, generator=generator),
        context=torch.randn(n, config.context_length, len(config.context_channels), generator=generator),
        context_mask=torch.ones(n, dtype=torch.bool),
    ).to(device)


def lstm_steps(device: torch.device, users: list[int], chunk: int, modes: list[str], seconds: float) -> list[dict]:
    """Steps per second advancing every user once per round, in chunks, states kept on the device."""
    model = build_model(ModelConfig(), seed=0).to(device).eval()
    rows = []
    for n in users:
        sizes = [min(chunk, n - start) for start in range(0, n, chunk)]
        inputs = {size: random_steps(model.config, size, device) for size in set(sizes)}
        for mode in modes:
            states = [model.init_state(size) for size in sizes]

            def one_round() -> int:
                with torch.inference_mode(), autocast(device, mode):
                    for k, size in enumerate(sizes):
                        states[k], _ = model.step(states[k], inputs[size])
                return n

            rows.append({"users": n, "chunk": min(chunk, n), "mode": mode,
                         "steps_per_s": per_second(one_round, device, seconds)})
            del states
    return rows


def engine_steps(device: torch.device, users: int, seconds: float) -> dict[str, Any]:
    """Steps per second through ``InferenceEngine.step``: bytes in and out, inputs collated on the CPU."""
    engine = InferenceEngine(build_model(ModelConfig(), seed=0), device=device)
    rng = np.random.default_rng(0)
    config = engine.config
    inputs = [Step(time=rng.normal(size=config.time_dim).astype(np.float32),
                   text_ids=rng.integers(0, config.text_buckets, 12).tolist(),
                   context=rng.normal(size=(config.context_length, len(config.context_channels))).astype(np.float32))
              for _ in range(users)]
    states = {r.user_id: r.state for r in engine.step([StepRequest(f"u{i}", None, inputs[i]) for i in range(users)])}

    def one_call() -> int:
        results = engine.step([StepRequest(user, state, inputs[i]) for i, (user, state) in enumerate(states.items())])
        states.update((r.user_id, r.state) for r in results)
        return users

    return {"users": users, "steps_per_s": per_second(one_call, device, seconds)}


def run(size: str, device: str | torch.device = "cuda") -> dict[str, Any]:
    spec = SIZES[size]
    device = torch.device(device)
    started = time.time()
    torch.backends.cudnn.benchmark = True
    return {
        "size": size, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "torch": torch.__version__, "python": platform.python_version(),
        "weights": "random initialisation (no download); throughput does not depend on the values",
        "resnet101": resnet_throughput(device, spec["batches"], spec["image_modes"], spec["seconds"]),
        "lstm_steps": lstm_steps(device, spec["users"], spec["chunk"], spec["step_modes"], spec["seconds"]),
        "engine_steps": engine_steps(device, spec["engine_users"], spec["seconds"]),
        "seconds": time.time() - started,
    }


def markdown(results: dict[str, Any]) -> str:
    if "skipped" in results:
        return f"GPU benchmark skipped: {results['skipped']}.\n"
    lines = [f"Device: {results['device']}, torch {results['torch']}; {results['weights']}.", "",
             "### ResNet-101 features (images/s, channels_last)", "",
             "| batch | mode | images/s |", "|---|---|---|"]
    lines += [f"| {r['batch']} | {r['mode']} | {r['images_per_s']:.0f} |" for r in results["resnet101"]]
    lines += ["", "### Batched incremental LSTM steps (states on the device)", "",
              "| users | chunk | mode | steps/s |", "|---|---|---|---|"]
    lines += [f"| {r['users']:,} | {r['chunk']:,} | {r['mode']} | {r['steps_per_s']:,.0f} |" for r in results["lstm_steps"]]
    engine = results["engine_steps"]
    lines += ["", f"Through `InferenceEngine.step` (bytes in and out), {engine['users']:,} users: "
                  f"{engine['steps_per_s']:,.0f} steps/s."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "gpu.json")
    args = parser.parse_args()
    results = run(args.size) if torch.cuda.is_available() else {"skipped": "no CUDA device"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(markdown(results), end="")


if __name__ == "__main__":
    main()
