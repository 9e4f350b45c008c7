"""``moodshift sweep`` end to end on the tiny preset: trials train, the report holds their numbers,
and trials the budget leaves out are listed as not run."""

from __future__ import annotations

import argparse
import json

from moodshift.models.cli import register
from moodshift.models.sweep import FACTORS

from .test_train import some_posts, tiny_preset  # noqa: F401  (fixtures: the tiny preset on a tenth of the posts)


def sweep_args(*argv: str) -> argparse.Namespace:
    """``moodshift`` arguments as its console script parses them."""
    parser = argparse.ArgumentParser(prog="moodshift")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def sweep(tmp_path, *extra: str) -> tuple[int, dict, str]:
    """Run ``moodshift sweep`` on the tiny preset, text, time and context only; its exit code, JSON and Markdown."""
    out = tmp_path / "docs" / "sweep.md"
    args = sweep_args("sweep", "--preset", "tiny", "--epochs", "1", "--without", "image", "--without", "audio",
                      "--out", str(out), "--work-dir", str(tmp_path / "work"), *extra)
    code = args.handler(args, None)
    return code, json.loads(out.with_suffix(".json").read_text()), out.read_text()


def test_trials_run_and_the_report_holds_their_numbers(tiny_preset, tmp_path):  # noqa: F811
    code, report, page = sweep(tmp_path, "--only", "base", "--only", "learning_rate=0.003", "--only", "no-context")
    assert code == 0 and report["preset"] == "tiny"
    trials = {t["name"]: t for t in report["trials"]}
    assert list(trials) == ["base", "learning_rate=0.003", "no-context"]
    assert all(t["status"] == "run" and t["epochs_run"] == 1 for t in trials.values())
    assert trials["no-context"]["modalities"] == ["text", "time"]
    for trial in trials.values():
        assert 0.0 <= trial["validation_macro_f1"] <= 1.0 and 0.0 <= trial["change_point_f1"] <= 1.0
        assert trial["parameters"] > 0 and trial["train_seconds"] > 0
        assert (tmp_path / "work" / f"{trial['name']}.pt").exists()
        row = next(line for line in page.splitlines() if line.startswith(f"| {trial['name']} |"))
        assert f"{trial['validation_macro_f1']:.3f}" in row and f"{trial['parameters']:,}" in row
    assert trials["base"]["parameters"] == trials["learning_rate=0.003"]["parameters"]
    assert "Not run (budget spent): none" in page and "![validation scores per factor](sweep.png)" in page
    assert (tmp_path / "docs" / "sweep.png").stat().st_size > 0


def test_trials_the_budget_leaves_out_are_listed(tiny_preset, tmp_path):  # noqa: F811
    """With no budget only the first trial runs (the reference every other is compared with)."""
    code, report, page = sweep(tmp_path, "--budget-minutes", "0", "--only", "base", "--only", "text_dim=32")
    assert code == 0
    assert [t["status"] for t in report["trials"]] == ["run", "not run: budget spent"]
    assert "Not run (budget spent): text_dim=32." in page
    assert "| text_dim=32 | not run: budget spent |" in page


def test_an_unknown_trial_is_refused_with_the_names(tiny_preset, tmp_path, capsys):  # noqa: F811
    args = sweep_args("sweep", "--preset", "tiny", "--only", "dropout=0.1", "--work-dir", str(tmp_path))
    assert args.handler(args, None) == 1
    err = capsys.readouterr().err
    assert "no trial named dropout=0.1" in err and "learning_rate=0.003" in err
    assert set(FACTORS) >= {"learning_rate", "num_layers", "hidden_size", "text_dim", "text_ngrams"}
