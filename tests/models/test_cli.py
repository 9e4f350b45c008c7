from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest
import torch

from moodshift.models.cli import register


@pytest.fixture
def parser():
    parser = argparse.ArgumentParser(prog="moodshift")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_defaults_follow_the_settings_state_dir(parser, tmp_path, capsys):
    args = parser.parse_args(["evaluate"])
    assert args.handler(args, SimpleNamespace(state_dir=tmp_path)) == 1
    assert str(tmp_path / "models" / "moodshift.pt") in capsys.readouterr().err


def test_train_refuses_a_missing_backbone_unless_random_is_allowed(parser, tmp_path, capsys):
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "empty-hub"))
    try:
        args = parser.parse_args(["train", "--preset", "quick", "--out", str(tmp_path / "m.pt"), "--no-progress"])
        assert args.handler(args, None) == 2
    finally:
        torch.hub.set_dir(previous)
    assert "--random-backbone" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_ablation_options_parse(parser):
    args = parser.parse_args(["train", "--without", "context", "--without", "image", "--out", "x.pt"])
    assert args.without == ["context", "image"]
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--without", "time"])


def test_name_value_options_parse_or_refuse(parser, capsys):
    args = parser.parse_args(["evaluate", "--ablation", "a=x.pt", "--label-map", "4=positive", "--label-map", "0=negative"])
    assert args.ablation == [("a", "x.pt")] and dict(args.label_map) == {"4": "positive", "0": "negative"}
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--label-map", "positive"])
    assert "wants NAME=VALUE, got 'positive'" in capsys.readouterr().err
