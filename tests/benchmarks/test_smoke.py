"""Benchmarks are not tests; this runs them at a tiny size so they do not rot."""

from __future__ import annotations

from benchmarks.run import markdown, run


def test_model_benchmarks_run_at_tiny_size() -> None:
    results = run("tiny")
    assert [r["history"] for r in results["incremental_vs_recompute"]] == [10, 100]
    assert all(r["incremental_ms"] > 0 and r["recompute_ms"] > 0 for r in results["incremental_vs_recompute"])
    assert [r["users"] for r in results["batched_vs_per_event"]] == [1, 10]
    assert results["memory"]["model_state_bytes_float16"] < results["memory"]["model_state_bytes_float32"]
    assert "| history |" in markdown(results)
