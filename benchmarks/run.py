"""Run the benchmarks and write the results: ``python -m benchmarks.run [--size tiny|full] [--only ...]``.

- ``model``: model-level comparisons (:mod:`benchmarks.model_bench`);
- ``e2e``: end to end through a real Kafka broker (:mod:`benchmarks.e2e`; about 6 minutes at full size);
- ``gpu``: GPU throughput (:mod:`benchmarks.gpu`); skipped without a CUDA device.

Results go to ``benchmarks/results/<size>.json`` (a run with ``--only`` replaces just its parts) and,
for the full size, the tables to ``benchmarks/results/full.md``, from which ``docs/benchmarks.md`` is
written. Each comparison is measured side by side in one run, so the ratios hold on a noisy machine
even when the absolute numbers move.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

from benchmarks import e2e, gpu, model_bench
from moodshift.models.config import ModelConfig

ROOT = Path(__file__).resolve().parent
BENCHMARKS = ("model", "e2e", "gpu")
SIZES = {
    # tiny: a smoke run for the test suite (seconds); full: the numbers in docs/benchmarks.md.
    "tiny": dict(lengths=[10, 100], users=[1, 10], repeats=3, per_event_budget=10, memory_users=1_000),
    "full": dict(lengths=[10, 100, 1_000], users=[1, 10, 100, 1_000, 10_000], repeats=20,
                 per_event_budget=500, memory_users=100_000),
}


def machine() -> dict[str, object]:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def run(size: str, only: tuple[str, ...] = BENCHMARKS, logs: Path | None = None) -> dict[str, object]:
    """The chosen benchmarks at ``size``; ``logs``: keep the end-to-end run's process logs there."""
    results: dict[str, object] = {"size": size, "machine": machine()}
    if "model" in only:
        results["model"] = run_model(size)
    if "e2e" in only:
        results["e2e"] = e2e.run(size, logs=logs)
    if "gpu" in only:
        results["gpu"] = gpu.run(size) if torch.cuda.is_available() else {"skipped": "no CUDA device"}
    return results


def run_model(size: str) -> dict[str, object]:
    spec = SIZES[size]
    config = ModelConfig()  # the method's shapes: hidden 256, 2 layers
    started = time.time()
    results = {
        "config": {"hidden_size": config.hidden_size, "num_layers": config.num_layers},
        "incremental_vs_recompute": model_bench.incremental_vs_recompute(config, spec["lengths"], spec["repeats"]),
        "batched_vs_per_event": model_bench.batched_vs_per_event(config, spec["users"], spec["per_event_budget"]),
        "memory": model_bench.state_memory(config, spec["memory_users"]),
    }
    results["seconds"] = time.time() - started
    return results


def markdown(results: dict) -> str:
    lines = [f"Machine: `{results['machine']}`", ""]
    if "model" in results:
        lines.append(model_markdown(results["model"]))
    if "e2e" in results:
        lines.append(e2e.markdown(results["e2e"]))
    if "gpu" in results:
        lines.append(gpu.markdown(results["gpu"]))
    return "\n".join(lines)


def model_markdown(results: dict) -> str:
    lines = ["### Incremental step vs recompute over history (per new step, median)", "",
             "| history | incremental ms | recompute ms | speedup |", "|---|---|---|---|"]
    lines += [f"| {r['history']} | {r['incremental_ms']:.2f} | {r['recompute_ms']:.2f} | {r['speedup']:.1f}× |"
              for r in results["incremental_vs_recompute"]]
    lines += ["", "### Batched steps vs one model call per event", "",
              "| active users | batched steps/s | per-event steps/s | speedup |", "|---|---|---|---|"]
    lines += [f"| {r['users']} | {r['batched_steps_per_s']:.0f} | {r['per_event_steps_per_s']:.0f} | "
              f"{r['speedup']:.1f}× |" for r in results["batched_vs_per_event"]]
    m = results["memory"]
    lines += ["", "### State memory", "",
              f"- model state per user: {m['model_state_bytes_float32']} bytes (float32), "
              f"{m['model_state_bytes_float16']} bytes (float16)",
              f"- the worker's whole record per user (windows + model state + detector): "
              f"{m['worker_record_bytes']} bytes",
              f"- RSS growth with {m['users_in_memory']:,} records in memory: "
              f"{m['rss_growth_bytes'] / 2**20:.0f} MiB ({m['rss_per_user_bytes']:.0f} bytes/user)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--only", choices=BENCHMARKS, action="append",
                        help="run only this benchmark (repeatable); default: all")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--logs", type=Path, default=None, help="keep the end-to-end run's worker logs here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("benchmarks").setLevel(logging.INFO)  # the end-to-end run's progress
    results = run(args.size, tuple(args.only or BENCHMARKS), args.logs)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.size}.json"
    if args.only and path.exists():  # keep the parts not run this time
        results = {**json.loads(path.read_text()), **results}
    path.write_text(json.dumps(results, indent=2))
    table = markdown(results)
    print(table)
    if args.size == "full":
        (args.out / "full.md").write_text(table)


if __name__ == "__main__":
    main()
