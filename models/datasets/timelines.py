"""Per-user timelines with known emotion change points, built from one split's labelled posts.

Construction (seeded, so the validation and test timelines are the same on every run):

1. A user's timeline has ``min_len..max_len`` steps, one post per step.
2. It is cut into *regimes* of ``min_dwell..max_dwell`` steps (uniform). Each regime has an emotion;
   the first is uniform over the labels, each next one uniform over the *other* labels, so every
   regime boundary is a true change point.
3. At each step a post is drawn (with replacement) from the split: with probability
   ``dominant_share`` one labelled with the regime's emotion, otherwise one of another label. Real
   users post off-mood now and then; those posts are noise a detector must not fire on.
4. Event times start at a random moment in 2009-2016 and advance by log-normal gaps (median
   ``median_gap_hours``); each step's context is the real weather/market window before that time.
   The external series are real but unrelated to the (synthetic) order of posts: any gain from them
   here would be spurious, which is what the "without external context" ablation checks.
5. Real video frames / audio clips (``MediaPool``) are attached at random to ``image_rate`` /
   ``audio_rate`` of the steps, independent of the emotion.

Targets per step: the post's own label and confidence (emotion vector and stage 1), ``change`` = 1
on the first ``change_tolerance`` steps of every regime after the first (stage 2 may need a post or
two of evidence; evaluation matches detections within the same margin), the transition
(previous regime → current regime; the diagonal means "no change"), and, when the builder has weak
labels, the post's named-emotion scores.

>>> from moodshift.models.datasets.posts import Post
>>> from moodshift.models.config import ModelConfig
>>> posts = [Post(f"word{i} feeling {['sad', 'meh', 'glad'][i % 3]}", i % 3, 1.0) for i in range(60)]
>>> spec = TimelineSpec(min_len=20, max_len=20, image_rate=0.0, audio_rate=0.0, modalities=("text", "time"))
>>> builder = TimelineBuilder(posts, ModelConfig(text_buckets=100), spec)
>>> [timeline] = builder.build(1, np.random.default_rng(0))
>>> len(timeline.steps), timeline.change_points == [t for t in range(1, 20) if timeline.regime[t] != timeline.regime[t - 1]]
(20, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from moodshift.models.config import ALL_MODALITIES, ModelConfig
from moodshift.models.context import ContextNormaliser
from moodshift.models.datasets.external import DailyContext
from moodshift.models.datasets.media import MediaPool
from moodshift.models.datasets.posts import Post
from moodshift.models.inputs import Step
from moodshift.models.text import TextHasher
from moodshift.models.timefeatures import time_features

_START_RANGE_S = (1_262_304_000, 1_483_228_800)  # 2010-01-01 .. 2017-01-01: context is real there


@dataclass(frozen=True)
class TimelineSpec:
    min_len: int = 30
    max_len: int = 60
    min_dwell: int = 4
    max_dwell: int = 15
    dominant_share: float = 0.8
    change_tolerance: int = 3
    median_gap_hours: float = 6.0
    image_rate: float = 0.25
    audio_rate: float = 0.15
    modalities: tuple[str, ...] = ALL_MODALITIES  # ablations drop some

    def to_dict(self) -> dict:
        return {**self.__dict__, "modalities": list(self.modalities)}


@dataclass
class Timeline:
    steps: list[Step]  # model inputs per step
    targets: list[tuple[int, float, int, int]]  # (label, confidence, change, transition) per step
    regime: np.ndarray  # [T] regime emotion per step
    change_points: list[int]  # steps where a new regime starts
    posts: list[Post]
    event_times: np.ndarray  # [T] Unix seconds
    named: np.ndarray | None = None  # [T, named] the posts' weak named-emotion scores (NaN: not scored)


def labels_per_step(timelines: Sequence[Timeline]) -> np.ndarray:
    """[steps]: every step's post label, timeline after timeline (the order in which per-timeline
    outputs are concatenated)."""
    return np.array([post.label for t in timelines for post in t.posts])


class TimelineBuilder:
    """Builds timelines from one split's posts (hashing each post once)."""

    def __init__(self, posts: Sequence[Post], config: ModelConfig, spec: TimelineSpec,
                 context: DailyContext | None = None, normaliser: ContextNormaliser | None = None,
                 media: MediaPool | None = None, weak_labels: np.ndarray | None = None,
                 hasher: TextHasher | None = None) -> None:
        """``weak_labels``: ``[len(posts), named]`` scores of each post (models.datasets.weak_labels);
        ``hasher``: the text ids' (default: ``config``'s, without a vocabulary)."""
        if weak_labels is not None and len(weak_labels) != len(posts):
            raise ValueError(f"{len(weak_labels)} rows of weak labels for {len(posts)} posts")
        self.weak_labels = weak_labels
        unknown = set(spec.modalities) - set(ALL_MODALITIES)
        if unknown or "time" not in spec.modalities:
            raise ValueError(f"modalities: need 'time', may use {ALL_MODALITIES}; got {spec.modalities}")
        self.posts, self.config, self.spec = list(posts), config, spec
        self.context, self.media = context, media
        self.normaliser = normaliser or ContextNormaliser.identity(len(config.context_channels))
        hasher = hasher or TextHasher(config)
        self.text_ids = [hasher.encode(post.text) for post in self.posts]
        labels = np.array([post.label for post in self.posts])
        self.by_label = [np.flatnonzero(labels == k) for k in range(config.n_labels)]
        # Regimes and off-mood posts use the labels that have posts (a two-class file has no neutral).
        self.present = [k for k, members in enumerate(self.by_label) if len(members)]
        if len(self.present) < 2:
            raise ValueError("timelines need posts of at least two labels")

    def _other(self, emotion: int, rng: np.random.Generator) -> int:
        """Any other present label, uniformly."""
        position = self.present.index(emotion)
        return self.present[(position + int(rng.integers(1, len(self.present)))) % len(self.present)]

    def _regimes(self, length: int, rng: np.random.Generator) -> np.ndarray:
        regime = np.empty(length, dtype=np.int64)
        start, emotion = 0, self.present[int(rng.integers(len(self.present)))]
        while start < length:
            dwell = int(rng.integers(self.spec.min_dwell, self.spec.max_dwell + 1))
            regime[start:start + dwell] = emotion
            start += dwell
            emotion = self._other(emotion, rng)
        return regime

    def _step(self, post_index: int, time_s: float, prev_time_s: float | None,
              rng: np.random.Generator) -> Step:
        # The same random draws whatever the modalities, so ablations see identical timelines.
        image_draw, audio_draw = rng.random(2)
        image_picks = rng.integers(0, 2**31, size=int(rng.integers(1, 4)))
        audio_pick = int(rng.integers(0, 2**31))
        modalities, pool = self.spec.modalities, self.media
        step: dict = {"time": time_features(time_s, prev_time_s)}
        if "text" in modalities:
            step["text_ids"] = self.text_ids[post_index]
        if "context" in modalities and self.context is not None:
            step["context"] = self.normaliser.apply(self.context.window(time_s, self.config.context_length))
        if pool is not None and "image" in modalities and image_draw < self.spec.image_rate:
            step["image"] = pool.image_features[image_picks % len(pool.image_features)]
        if pool is not None and "audio" in modalities and audio_draw < self.spec.audio_rate:
            step["audio"] = pool.audio_features[audio_pick % len(pool.audio_features)]
        return Step(**step)

    def build_one(self, rng: np.random.Generator) -> Timeline:
        spec, n_labels = self.spec, self.config.n_labels
        length = int(rng.integers(spec.min_len, spec.max_len + 1))
        regime = self._regimes(length, rng)
        gaps = rng.lognormal(np.log(spec.median_gap_hours * 3600.0), 1.0, size=length)
        gaps[0] = 0.0
        event_times = rng.uniform(*_START_RANGE_S) + np.cumsum(gaps)
        steps, targets, posts, indices = [], [], [], []
        last_change = -spec.change_tolerance
        for t in range(length):
            emotion = int(regime[t])
            if rng.random() >= spec.dominant_share:  # an off-mood post
                emotion = self._other(emotion, rng)
            index = int(rng.choice(self.by_label[emotion]))
            post = self.posts[index]
            if t > 0 and regime[t] != regime[t - 1]:
                last_change = t
            changed = t - last_change < spec.change_tolerance
            previous_regime = int(regime[last_change - 1]) if changed else int(regime[t])
            steps.append(self._step(index, event_times[t], event_times[t - 1] if t else None, rng))
            targets.append((post.label, post.confidence, int(changed), previous_regime * n_labels + int(regime[t])))
            posts.append(post)
            indices.append(index)
        change_points = [t for t in range(1, length) if regime[t] != regime[t - 1]]
        named = None if self.weak_labels is None else self.weak_labels[indices]
        return Timeline(steps, targets, regime, change_points, posts, event_times, named)

    def build(self, n: int, rng: np.random.Generator) -> list[Timeline]:
        return [self.build_one(rng) for _ in range(n)]
