from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moodshift.models.config import ModelConfig
from moodshift.models.text import TextHasher, build_vocabulary, tokenize


def test_social_media_tokens():
    tokens = tokenize("LOVE it!!! @JetBlue #BestDay 😍😍 see https://t.co/abc :) 42 don't")
    assert tokens == ["love", "it", "<mention>", "#bestday", "bestday", "😍", "😍", "see", "<url>",
                      ":)", "<num>", "don't"]


@given(st.text(max_size=200))
def test_ids_stay_in_range_and_count_ngrams(text):
    config = ModelConfig(text_buckets=97, text_ngrams=2)
    ids = TextHasher(config).encode(text)
    n = len(tokenize(text))
    assert len(ids) == n + max(n - 1, 0)
    assert all(0 <= i < 97 for i in ids)


def test_salt_changes_the_hashing():
    text = "what a great flight"
    assert TextHasher(ModelConfig()).encode(text) != TextHasher(ModelConfig(text_hash_salt="other")).encode(text)


def test_ids_are_identical_in_another_process():
    """Python's hash() is salted per process; the hasher must not depend on it."""
    text = "Cancelled flight again @united #fail 😡"
    code = ("from moodshift.models.config import ModelConfig; from moodshift.models.text import TextHasher;"
            f"print(TextHasher(ModelConfig()).encode({text!r}))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PYTHONPATH": ":".join(sys.path)})
    assert other.stdout.strip() == str(TextHasher(ModelConfig()).encode(text))


def test_vocabulary_grams_get_their_own_ids_and_the_rest_hash_after_them():
    config = ModelConfig(text_buckets=1000, text_vocabulary=4)
    texts = ["not good", "not good at all", "good day", "so good", "a day"]
    vocabulary = build_vocabulary(texts, config)
    assert vocabulary == ("good", "day", "not", "not good")  # by posts using them, then alphabetically
    hasher = TextHasher(config, vocabulary)
    assert hasher.encode("not good") == [2, 0, 3]
    unseen = [hasher.token_id(gram) for gram in ("at", "all", "good at", "zebra")]
    assert all(4 <= i < 1000 for i in unseen)
    with pytest.raises(ValueError, match="vocabulary of 5 grams"):
        TextHasher(config, vocabulary + ("so",))
