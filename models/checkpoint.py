"""Checkpoints: the model's weights with everything needed to use them correctly later.

The file is a ``torch.save`` dict: ``format_version``, ``meta`` (plain JSON-able values, see
:class:`CheckpointMeta`), ``model_state`` and, for resuming training, ``training_state``. Files
are written to a temporary name and renamed, so a crash never leaves half a checkpoint.

>>> import tempfile
>>> from moodshift.models.config import ModelConfig
>>> from moodshift.models.model import build_model
>>> config = ModelConfig(text_buckets=32, text_dim=4, image_dim=8, common_dim=4, hidden_size=8)
>>> meta = CheckpointMeta.create(config, training_data_hash="abc", random_backbone=True)
>>> path = Path(tempfile.mkdtemp()) / "model.pt"
>>> save_checkpoint(path, build_model(config), meta)
>>> model, loaded = load_checkpoint(path)
>>> loaded.labels, loaded.random_backbone, model.config == config
(('negative', 'neutral', 'positive'), True, True)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from moodshift.models.config import ModelConfig
from moodshift.models.context import ContextNormaliser
from moodshift.models.model import MoodshiftModel
from moodshift.models.text import TextHasher

FORMAT_VERSION = 1
MODEL_FAMILY = "moodshift-mmlstm"


def default_checkpoint_path(state_dir: Path) -> Path:
    """Where ``moodshift train`` writes and the pipeline reads the model by default."""
    return Path(state_dir) / "models" / "moodshift.pt"


@dataclass(frozen=True)
class CheckpointMeta:
    """What a model was trained with and on. ``random_backbone`` marks a model whose image
    features came from an untrained backbone: its image pathway has learned nothing real."""

    config: ModelConfig
    model_version: str
    training_data_hash: str
    random_backbone: bool
    text_hashing: dict[str, Any]
    context_normaliser: ContextNormaliser
    image_encoder: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # preset, seed, epochs, metrics, ...
    # The worker's change detector settings tuned on validation timelines (models.detector.DetectorConfig
    # fields); empty in checkpoints made before tuning existed: the worker then uses its defaults.
    detector: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    def text_hasher(self) -> TextHasher:
        """The hasher this model's text ids came from in training: its config and its vocabulary."""
        return TextHasher(self.config, self.text_hashing.get("vocabulary", ()))

    @classmethod
    def create(cls, config: ModelConfig, *, training_data_hash: str, random_backbone: bool,
               context_normaliser: ContextNormaliser | None = None, vocabulary: Sequence[str] = (),
               **extra: Any) -> "CheckpointMeta":
        created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        return cls(
            config=config,
            model_version=extra.pop("model_version",
                                    f"{MODEL_FAMILY}-{created:%Y%m%dT%H%M%SZ}-{training_data_hash[:8]}"),
            training_data_hash=training_data_hash,
            random_backbone=random_backbone,
            text_hashing=TextHasher(config, vocabulary).describe(),
            context_normaliser=context_normaliser or ContextNormaliser.identity(len(config.context_channels)),
            created_at=created.isoformat(),
            **extra,
        )

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(config=self.config.to_dict(), labels=list(self.labels),
                      context_normaliser=self.context_normaliser.to_dict())
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "CheckpointMeta":
        values = dict(values)
        values.pop("labels", None)  # derived from the config
        values["config"] = ModelConfig.from_dict(values["config"])
        values["context_normaliser"] = ContextNormaliser.from_dict(values["context_normaliser"])
        return cls(**values)


def save_checkpoint(path: str | os.PathLike, model: MoodshiftModel, meta: CheckpointMeta,
                    training_state: dict[str, Any] | None = None) -> None:
    if meta.config != model.config:
        raise ValueError("checkpoint meta describes a different config than the model's")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, "meta": meta.to_dict(),
               "model_state": model.state_dict(), "training_state": training_state}
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read(path: str | os.PathLike, map_location: str | torch.device) -> dict[str, Any]:
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {payload.get('format_version')}, "
                         f"this code reads {FORMAT_VERSION}")
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> tuple[MoodshiftModel, CheckpointMeta]:
    """The model (in eval mode, on ``map_location``) and its meta."""
    payload = _read(path, map_location)
    meta = CheckpointMeta.from_dict(payload["meta"])
    model = MoodshiftModel(meta.config)
    model.load_state_dict(payload["model_state"])
    return model.to(map_location).eval(), meta


def load_training_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict | None:
    """Optimiser, epoch and early-stopping state saved for ``--resume`` (None if not saved)."""
    return _read(path, map_location)["training_state"]
