"""Run every benchmark and write the results: ``python -m benchmarks.run [--size tiny|full]``.

Results go to ``benchmarks/results/<size>.json`` and, for the full size, to the table in
``docs/benchmarks.md``. Each comparison is measured side by side in one run, so the ratios hold on
a noisy machine even when the absolute numbers move.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from benchmarks import model_bench
from models.config import ModelConfig

ROOT = Path(__file__).resolve().parent
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


def run(size: str) -> dict[str, object]:
    spec = SIZES[size]
    config = ModelConfig()  # the method's shapes: hidden 256, 2 layers
    started = time.time()
    results = {
        "size": size, "machine": machine(), "config": {"hidden_size": config.hidden_size,
                                                       "num_layers": config.num_layers},
        "incremental_vs_recompute": model_bench.incremental_vs_recompute(config, spec["lengths"], spec["repeats"]),
        "batched_vs_per_event": model_bench.batched_vs_per_event(config, spec["users"], spec["per_event_budget"]),
        "memory": model_bench.state_memory(config, spec["memory_users"]),
    }
    results["seconds"] = time.time() - started
    return results


def markdown(results: dict) -> str:
    lines = [f"Machine: `{results['machine']}`", "",
             "### Incremental step vs recompute over history (per new step, median)", "",
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
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    results = run(args.size)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.size}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    print(table)
    if args.size == "full":
        (args.out / "model.md").write_text(table)


if __name__ == "__main__":
    main()
