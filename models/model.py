"""The multimodal emotion model: fusion, two LSTM units, a non-negative emotion vector, two stages.

Reads top-down: building blocks, the model, then the factory. Per step and user::

    text ids ─word vectors───┐    (+ fixed lexicon features of the words: models/word_priors.py)
    image features ──────────┼─ per-modality projection to common_dim (or a learned "missing")
    audio summary ───────────┘          │ items [3 * common]
    context series ─GRU─┐               │
    time features ──────┴─ temporal context g [common] ──┬──────────┐
                                                          ▼          ▼
                             feature LSTM([items, g]) h_f   context LSTM(g) h_c   (layers × hidden)
                    r = [h_f, h_c, items, g]  [2 * hidden + 4 * common]  (the step's own features
                        skip past the LSTMs: without them stage 1 sat at chance for ~100 batches)
    emotion vector   e = softplus(W r)            [labels]   non-negative by construction
    named emotions   n = sigmoid(W_n r)           [named]    e.g. Plutchik's eight, each in [0, 1]
    stage 1 (maxent) p(y | e) = softmax(θ e + b)  [labels]
                     reported: averaged with a TF-IDF + LR classifier of the step's text
                     (models/lexical.py; with ``config.lexical_classifier``)
    stage 2          [e, e_prev, e - e_prev, r, has_prev] → change logit [1], transition (from → to)
                     logits [labels × labels]
                     reported: with ``config.change_history``, a change classifier fitted after training
                     over the reported stage 1 of this and the previous steps and the change logit
                     (models/change_classifier.py)

``step`` advances B users by one step each; ``forward`` runs whole sequences for training and gives
the same numbers as stepping (tests/models/test_equivalence.py).

>>> import numpy as np
>>> from moodshift.models.config import ModelConfig
>>> from moodshift.models.inputs import Step, StepInputs
>>> config = ModelConfig(text_buckets=64, text_dim=8, image_dim=16, audio_mels=4, context_length=5,
...                      context_hidden=8, common_dim=8, hidden_size=16, stage2_hidden=8)
>>> model = MoodshiftModel(config).eval()
>>> state = model.init_state(2)
>>> inputs = StepInputs.collate([Step(time=np.zeros(6), text_ids=[3, 9]), Step(time=np.zeros(6))], config)
>>> state, out = model.step(state, inputs)
>>> out.emotion.shape, out.transition_probs.shape, bool((out.emotion >= 0).all()), state.steps.tolist()
(torch.Size([2, 3]), torch.Size([2, 3, 3]), True, [1, 1])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from moodshift.models.change_classifier import ChangeClassifier
from moodshift.models.config import ModelConfig
from moodshift.models.inputs import SequenceInputs, StepInputs, bag_index
from moodshift.models.lexical import LexicalClassifier
from moodshift.models.word_priors import (known_word_valence, mean_prior_features, prior_direction,
                                          with_lexicon_prior)
from moodshift.models.state import UserStates


STAGE1_INIT_SCALE = 4.0


class ModalityProjection(nn.Module):
    """Feature map transformation: one modality → ``out_dim``, or a learned vector when missing."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.ReLU())
        self.missing = nn.Parameter(torch.zeros(out_dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: [N, in_dim], mask: [N] bool -> [N, out_dim]
        return torch.where(mask[:, None], self.project(x), self.missing)


class ContextEncoder(nn.Module):
    """External series (weather, market) → a recurrent summary of its recent history."""

    def __init__(self, n_channels: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(n_channels, hidden, batch_first=True)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        # series: [N, L, channels] -> last hidden state [N, hidden]
        _, last = self.gru(series)
        return last[-1]


def _init_lstm(lstm: nn.LSTM) -> None:
    """Orthogonal recurrent weights and forget-gate bias 1: gradients neither vanish nor explode."""
    hidden = lstm.hidden_size
    for name, param in lstm.named_parameters():
        if name.startswith("weight_hh"):
            for gate in range(4):  # each gate's square block gets its own orthogonal matrix
                nn.init.orthogonal_(param.data[gate * hidden:(gate + 1) * hidden])
        elif name.startswith("weight_ih"):
            nn.init.xavier_uniform_(param.data)
        elif name.startswith("bias"):
            param.data.zero_()
            if name.startswith("bias_ih"):  # gate order i, f, g, o; the two biases add up
                param.data[hidden:2 * hidden] = 1.0


@dataclass
class StepOutputs:
    """Model outputs for a batch of steps: shapes [B, ...] from ``step``, [B, T, ...] from ``forward``."""

    emotion: torch.Tensor  # [..., labels] non-negative emotion vector
    stage1_logits: torch.Tensor  # [..., labels]
    change_logit: torch.Tensor  # [...]
    transition_logits: torch.Tensor  # [..., labels * labels], row-major (from, to)
    named_logits: torch.Tensor | None = None  # [..., named]: config.named_emotions; None without them
    # [..., labels]: stage 1 as reported, the network's averaged with the lexical classifier's
    # (models/lexical.py) and moved by the lexicon prior (config.lexicon_prior_weight); None without
    # either: then it is softmax(stage1_logits).
    fused_stage1_probs: torch.Tensor | None = None
    # [...]: the change classifier's logit (models/change_classifier.py), reported instead of
    # ``change_logit``, the network's; None without a fitted one. Its features: ``change_features``.
    fitted_change_logit: torch.Tensor | None = None
    change_features: torch.Tensor | None = None

    @property
    def named_scores(self) -> torch.Tensor | None:
        """[..., named] in [0, 1]: how strongly each named emotion is expressed."""
        return None if self.named_logits is None else self.named_logits.sigmoid()

    @property
    def stage1_probs(self) -> torch.Tensor:
        """[..., labels]: what the model reports. Training's loss reads ``stage1_logits``, the network's own."""
        return self.stage1_logits.softmax(-1) if self.fused_stage1_probs is None else self.fused_stage1_probs

    @property
    def change_prob(self) -> torch.Tensor:
        """[...]: what the model reports. Training's loss reads ``change_logit``, the network's own."""
        return (self.change_logit if self.fitted_change_logit is None else self.fitted_change_logit).sigmoid()

    @property
    def transition_probs(self) -> torch.Tensor:
        """[..., from, to]: probability of each (previous emotion → current emotion) transition."""
        n = self.emotion.shape[-1]
        return self.transition_logits.softmax(-1).unflatten(-1, (n, n))


class MoodshiftModel(nn.Module):
    """Fuses a user's modalities and external context step by step; see the module docstring."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        common, hidden, labels = config.common_dim, config.hidden_size, config.n_labels
        lstm_dropout = config.dropout if config.num_layers > 1 else 0.0

        self.text_embedding = nn.EmbeddingBag(config.text_buckets, config.text_dim, mode="sum")
        # Small word vectors (as fastText starts them): Adam's fixed-size steps then move a rarely
        # seen word's vector far enough to matter, which N(0, 1) initial vectors would drown.
        nn.init.uniform_(self.text_embedding.weight, -1.0 / config.text_dim, 1.0 / config.text_dim)
        # Fixed lexicon features per prior id (models/word_priors.py): a buffer, so the checkpoint
        # carries them and training leaves them as the lexicon says.
        self.register_buffer("word_prior_table", torch.zeros(config.prior_buckets, config.word_prior_dim)
                             if config.word_priors else None)
        self.text_proj = ModalityProjection(config.text_dim + config.word_prior_dim, common)
        self.image_proj = ModalityProjection(config.image_dim, common)
        self.audio_proj = ModalityProjection(config.audio_dim, common)
        self.context_encoder = ContextEncoder(len(config.context_channels), config.context_hidden)
        self.context_proj = ModalityProjection(config.context_hidden, common)
        self.temporal = nn.Sequential(nn.Linear(common + config.time_dim, common), nn.ReLU())
        self.input_dropout = nn.Dropout(config.dropout)

        self.feature_lstm = nn.LSTM(4 * common, hidden, config.num_layers, batch_first=True,
                                    dropout=lstm_dropout)
        self.context_lstm = nn.LSTM(common, hidden, config.num_layers, batch_first=True,
                                    dropout=lstm_dropout)
        self.output_dropout = nn.Dropout(config.dropout)

        representation = 2 * hidden + 4 * common
        self.emotion_head = nn.Linear(representation, labels)
        named = len(config.named_emotions)
        self.named_head = nn.Linear(representation, named) if named else None
        self.stage1 = nn.Linear(labels, labels)  # maximum entropy: p(y | e) ∝ exp(θ_y · e)
        self.stage2 = nn.Sequential(nn.Linear(3 * labels + representation + 1, config.stage2_hidden), nn.ReLU())
        self.change_head = nn.Linear(config.stage2_hidden, 1)
        self.transition_head = nn.Linear(config.stage2_hidden, labels * labels)
        # Fitted by scikit-learn, not by gradients: its tensors are buffers (models/lexical.py).
        self.lexical = (LexicalClassifier(config.text_buckets, labels, config.word_prior_dim)
                        if config.lexical_classifier else None)
        # The lexicon prior's weight with a sign per label (config.lexicon_prior_weight); from the
        # config, so not saved with the weights.
        self.register_buffer("lexicon_prior_direction",
                             prior_direction(config.labels, config.lexicon_prior_weight), persistent=False)
        # Fitted by scikit-learn after training, like the lexical classifier (models/change_classifier.py).
        self.change_classifier = (ChangeClassifier(labels, config.change_history)
                                  if config.change_history else None)

        # Start the maxent layer as "the largest emotion axis wins": emotion vectors live near
        # [0, 1], so small random weights would give near-uniform stage-1 probabilities for a long time.
        with torch.no_grad():
            self.stage1.weight.copy_(STAGE1_INIT_SCALE * torch.eye(labels))
            self.stage1.bias.zero_()
        _init_lstm(self.feature_lstm)
        _init_lstm(self.context_lstm)

    def set_named_base_rates(self, rates: torch.Tensor) -> None:
        """Start each named emotion's output at its base rate (e.g. the weak labeller's mean score):
        from sigmoid(0) = 0.5, Adam's small steps would take thousands of batches to move the bias
        to rates near 0.1, and the head would sit above every score meanwhile."""
        with torch.no_grad():
            self.named_head.bias.copy_(torch.logit(rates.clamp(1e-3, 1 - 1e-3)))

    # -- building blocks ---------------------------------------------------------------------

    def lexicon_means(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor | None:
        """[N, word_prior_dim]: each step's mean lexicon row (models/word_priors.py), which the text
        vector, the lexical classifier and the lexicon prior all read; None without ``word_priors``."""
        if not self.config.word_priors:
            return None
        return mean_prior_features(ids, offsets, self.word_prior_table, self.config.text_buckets)

    def embed_text(self, ids: torch.Tensor, offsets: torch.Tensor, prior_means: torch.Tensor | None) -> torch.Tensor:
        """Mean of each bag's word vectors ([N, text_dim]); in training, of a random ``word_dropout``
        subset, so the model cannot memorise a post by one rare word. With ``word_priors``, the bags'
        mean lexicon rows follow (``prior_means``, [N, word_prior_dim]; :meth:`lexicon_means`)."""
        keep = torch.ones(len(ids), device=ids.device)
        if self.training and self.config.word_dropout > 0:
            keep = (torch.rand(len(ids), device=ids.device) >= self.config.word_dropout).float()
        bag = bag_index(ids, offsets)
        def mean_weights(weights: torch.Tensor) -> torch.Tensor:
            kept = torch.zeros(len(offsets), device=ids.device).index_add_(0, bag, weights)
            return weights / kept.clamp(min=1)[bag]

        if not self.config.word_priors:
            return self.text_embedding(ids, offsets, per_sample_weights=mean_weights(keep))
        buckets = self.config.text_buckets
        is_prior = ids >= buckets  # TextHasher.prior_id
        words = self.text_embedding(ids.masked_fill(is_prior, 0), offsets,
                                    per_sample_weights=mean_weights(keep * ~is_prior))
        # The lexicon's features are fixed, so there is nothing to memorise: they are never hidden.
        return torch.cat([words, prior_means], dim=-1)

    def encode_steps(self, inputs: StepInputs, prior_means: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step inputs of the two LSTM units: items+context [N, 4 * common], context [N, common]."""
        text = self.embed_text(inputs.text_ids, inputs.text_offsets, prior_means)  # [N, text_dim + word_prior_dim]
        context = self.context_encoder(inputs.context)  # [N, context_hidden]
        temporal = self.temporal(torch.cat(
            [self.context_proj(context, inputs.context_mask), inputs.time], dim=-1))  # [N, common]
        items = torch.cat([
            self.text_proj(text, inputs.text_mask),
            self.image_proj(inputs.image, inputs.image_mask),
            self.audio_proj(inputs.audio, inputs.audio_mask),
            temporal,
        ], dim=-1)
        return self.input_dropout(items), self.input_dropout(temporal)

    def emotion_vector(self, representation: torch.Tensor) -> torch.Tensor:
        # [..., 2 * hidden] -> [..., labels]; softplus keeps every axis non-negative, and every
        # emotion gets the same kind of axis, so no emotion is favoured by construction.
        return F.softplus(self.emotion_head(self.output_dropout(representation)))

    def heads(self, emotion: torch.Tensor, representation: torch.Tensor, prev_emotion: torch.Tensor,
              has_prev: torch.Tensor, inputs: StepInputs, prior_means: torch.Tensor | None) -> StepOutputs:
        """Both stages from the emotion vectors ([..., labels]) and the representation; ``inputs``
        (the same steps, flattened) and their mean lexicon rows for the lexical classifier and the prior."""
        # A first step has no previous emotion: zero it rather than compare with the zero state.
        prev_emotion = prev_emotion * has_prev[..., None]
        stage2 = self.stage2(torch.cat(
            [emotion, prev_emotion, emotion - prev_emotion, representation, has_prev[..., None].float()],
            dim=-1))
        stage1_logits = self.stage1(emotion)
        fused = None
        if self.lexical is not None:
            lexical = self.lexical(inputs.text_ids, inputs.text_offsets, prior_means).view_as(stage1_logits)
            fused = self.lexical.fuse(stage1_logits.softmax(-1), lexical, has_prev,
                                      inputs.text_mask.view_as(has_prev))
        if self.config.lexicon_prior_weight:
            valence = known_word_valence(prior_means).view_as(has_prev)
            fused = with_lexicon_prior(stage1_logits.softmax(-1) if fused is None else fused, valence,
                                       self.lexicon_prior_direction)
        return StepOutputs(
            emotion=emotion,
            stage1_logits=stage1_logits,
            change_logit=self.change_head(stage2).squeeze(-1),
            transition_logits=self.transition_head(stage2),
            named_logits=None if self.named_head is None else self.named_head(self.output_dropout(representation)),
            fused_stage1_probs=fused,
        )

    def classify_change(self, outputs: StepOutputs, history: torch.Tensor, has_history: torch.Tensor) -> StepOutputs:
        """``outputs`` with the change classifier's features and logit (models/change_classifier.py)
        from the reported stage 1 of the previous steps (``history`` [..., history, labels], the latest
        first; ``has_history`` [..., history]); unchanged without a classifier, or in training (its
        loss reads the network's change logit; the classifier is fitted after training, in eval mode)."""
        if self.change_classifier is None or self.training:
            return outputs
        outputs.change_features = self.change_classifier.features(
            outputs.stage1_probs, history, has_history, outputs.change_logit)
        outputs.fitted_change_logit = self.change_classifier(outputs.change_features)
        return outputs

    # -- streaming API -------------------------------------------------------------------------

    def init_state(self, n: int) -> UserStates:
        """Fresh state for ``n`` users, on the model's device."""
        device = self.emotion_head.weight.device
        return UserStates.zeros(n, self.config.num_layers, self.config.hidden_size,
                                self.config.n_labels, self.config.change_history, device=device)

    def step(self, state: UserStates, inputs: StepInputs) -> tuple[UserStates, StepOutputs]:
        """Advance B users by one step each; state row i belongs to input row i."""
        if len(state) != inputs.batch_size:
            raise ValueError(f"{len(state)} states for {inputs.batch_size} inputs")
        prior_means = self.lexicon_means(inputs.text_ids, inputs.text_offsets)
        items, temporal = self.encode_steps(inputs, prior_means)
        feature_out, (feature_h, feature_c) = self.feature_lstm(
            items[:, None], (state.feature_h, state.feature_c))  # [B, 1, hidden]
        context_out, (context_h, context_c) = self.context_lstm(
            temporal[:, None], (state.context_h, state.context_c))
        representation = torch.cat([feature_out[:, 0], context_out[:, 0], items], dim=-1)
        outputs = self.heads(self.emotion_vector(representation), representation,
                             state.prev_emotion, state.steps > 0, inputs, prior_means)
        lags = torch.arange(1, self.config.change_history + 1, device=state.steps.device)
        outputs = self.classify_change(outputs, state.prev_probs, state.steps[:, None] >= lags)
        reported = torch.cat([outputs.stage1_probs[:, None], state.prev_probs], dim=1)[:, :self.config.change_history]
        new_state = UserStates(feature_h, feature_c, context_h, context_c, prev_emotion=outputs.emotion,
                               steps=state.steps + 1, prev_probs=reported)
        return new_state, outputs

    def step_stored(self, stored: Sequence[bytes | None], inputs: StepInputs,
                    state_dtype: str = "float32") -> tuple[list[bytes], UserStates, StepOutputs]:
        """:meth:`step` for users whose state is kept as bytes (``None``: a new user), as the worker's
        records and the evaluation of the serving path keep it: their new state bytes in
        ``state_dtype``, the new states on the CPU, and the outputs."""
        device = self.emotion_head.weight.device
        if None in stored:
            fresh = self.init_state(1).to("cpu").to_bytes()
            stored = [fresh if blob is None else blob for blob in stored]
        state = UserStates.from_bytes_each(stored, device, history=self.config.change_history)
        new_state, outputs = self.step(state, inputs.to(device))
        on_cpu = new_state.to("cpu")
        return on_cpu.to_bytes_each(state_dtype), on_cpu, outputs

    # -- training ------------------------------------------------------------------------------

    def forward(self, inputs: SequenceInputs, state: UserStates | None = None) -> StepOutputs:
        """Outputs for every step of B sequences ([B, T, ...]); padded steps give ignorable values."""
        batch, length = inputs.batch_size, inputs.max_len
        state = self.init_state(batch) if state is None else state
        prior_means = self.lexicon_means(inputs.steps.text_ids, inputs.steps.text_offsets)
        items, temporal = self.encode_steps(inputs.steps, prior_means)
        items = items.view(batch, length, -1)
        temporal = temporal.view(batch, length, -1)
        feature_out, _ = self.feature_lstm(items, (state.feature_h, state.feature_c))  # [B, T, hidden]
        context_out, _ = self.context_lstm(temporal, (state.context_h, state.context_c))
        representation = torch.cat([feature_out, context_out, items], dim=-1)
        emotion = self.emotion_vector(representation)  # [B, T, labels]
        # Stage 2 compares each step with the one before; the first compares with the given state.
        prev_emotion = torch.cat([state.prev_emotion[:, None], emotion[:, :-1]], dim=1)
        positions = torch.arange(length, device=state.steps.device)
        has_prev = (state.steps[:, None] + positions[None, :]) > 0
        outputs = self.heads(emotion, representation, prev_emotion, has_prev, inputs.steps, prior_means)
        # The change classifier's history at step t, lag k: step t - k's reported stage 1, or, before
        # the sequence, the state's (its latest first).
        history = self.config.change_history
        reported = torch.cat([state.prev_probs.flip(1), outputs.stage1_probs], dim=1)  # [B, history + T, labels]
        lags = torch.arange(1, history + 1, device=state.steps.device)
        earlier = reported[:, history + positions[:, None] - lags[None, :]]  # [B, T, history, labels]
        has_earlier = (state.steps[:, None, None] + positions[None, :, None]) >= lags
        return self.classify_change(outputs, earlier, has_earlier)


def build_model(config: ModelConfig | None = None, seed: int | None = None) -> MoodshiftModel:
    """A freshly initialised model; ``seed`` makes the initial parameters reproducible."""
    if seed is not None:
        torch.manual_seed(seed)
    return MoodshiftModel(config or ModelConfig())
