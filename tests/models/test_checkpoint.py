from __future__ import annotations

import pytest
import torch

from moodshift.models.checkpoint import (CheckpointMeta, default_checkpoint_path, load_checkpoint,
                               load_training_state, save_checkpoint)
from moodshift.models.config import ModelConfig
from moodshift.models.context import ContextNormaliser
from moodshift.models.model import build_model

from .helpers import TINY


def test_round_trip_keeps_weights_and_meta(tmp_path):
    config = TINY.replace(labels=("sad", "calm", "happy", "angry"))
    model = build_model(config, seed=0)
    normaliser = ContextNormaliser((1.0, 2.0, 3.0, 4.0), (0.5, 1.0, 1.5, 2.0))
    meta = CheckpointMeta.create(config, training_data_hash="f" * 64, random_backbone=True,
                                 context_normaliser=normaliser, training={"preset": "quick"})
    path = default_checkpoint_path(tmp_path)
    save_checkpoint(path, model, meta, training_state={"epoch": 3})
    loaded, loaded_meta = load_checkpoint(path)
    assert loaded_meta == meta
    assert loaded_meta.labels == ("sad", "calm", "happy", "angry")
    assert loaded_meta.text_hashing["buckets"] == config.text_buckets
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert not loaded.training
    assert load_training_state(path) == {"epoch": 3}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_meta_must_match_the_model(tmp_path):
    meta = CheckpointMeta.create(ModelConfig(), training_data_hash="x", random_backbone=False)
    with pytest.raises(ValueError, match="different config"):
        save_checkpoint(tmp_path / "m.pt", build_model(TINY), meta)


def test_config_json_round_trip_and_validation():
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"hidden": 3})
    with pytest.raises(ValueError, match="labels"):
        ModelConfig(labels=("only",))
