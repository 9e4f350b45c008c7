"""Text → hashed token ids for the model's trainable word vectors.

Tokens are lower-cased words, hashtags (kept with their ``#`` and also as the bare word), emoji
(one token each), and placeholders for mentions, URLs and numbers, so that ``@united`` or a link
never becomes a feature of its own. Word pairs (n-grams up to ``config.text_ngrams``) are hashed
too: they carry negation ("not good"). Hashing uses BLAKE2b with a salt from the config, so ids are
identical in every process and on every machine (Python's ``hash()`` is not).

With a vocabulary (:func:`build_vocabulary`, the grams most training posts use; a checkpoint carries
it), each of its grams has an id of its own, ``0 .. len(vocabulary) - 1``, and only other grams are
hashed, into the ids after it. Why: 50,000 grams hashed into 65,536 ids share ids often enough to
cost a linear classifier over them 0.014 macro F1 per post (models/lexical.py).

>>> from moodshift.models.config import ModelConfig
>>> hasher = TextHasher(ModelConfig(text_buckets=1000))
>>> tokenize("Not good @united!! #fail 😡 http://t.co/x")
['not', 'good', '<mention>', '#fail', 'fail', '😡', '<url>']
>>> ids = hasher.encode("Not good @united!! #fail 😡 http://t.co/x")
>>> len(ids), all(0 <= i < 1000 for i in ids), ids == hasher.encode("not GOOD @delta #fail 😡 https://a.b")
(13, True, True)
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from typing import Any, Iterable, Sequence

from moodshift.models.config import ModelConfig

#: Changes whenever tokenisation changes; checkpoints record it.
TOKENIZER_VERSION = "1"
# A post's first MAX_TOKENS token ids, in training and serving alike (a window keeps at most as many).
MAX_TOKENS = 512

# Emoji and pictographs (the common blocks), matched one code point at a time.
_EMOJI = (
    "[\U0001F300-\U0001FAFF\U00002600-\U000027BF\U0001F000-\U0001F2FF"
    "\U0001F900-\U0001F9FF\u2B50\u2B55\u203C\u2049\u2122\u2139\u3030\u303D]"
)
_TOKEN = re.compile(
    r"(?P<url>(?:https?://|www\.)\S+)"
    r"|(?P<mention>@\w+)"
    r"|(?P<hashtag>#\w+)"
    r"|(?P<number>\d+(?:[.,]\d+)*)"
    r"|(?P<word>[^\W\d_]+(?:'[^\W\d_]+)*)"
    rf"|(?P<emoji>{_EMOJI})"
    r"|(?P<emoticon>[:;=][\-']?[()\[\]dDpP/\\|])"
)


#: The tokens that stand for a kind of text (a link, a mention, a number), not for its words.
PLACEHOLDERS = ("<url>", "<mention>", "<num>")

#: How many hashed grams :func:`_hash64` remembers (about 16 MB): posts repeat their words and pairs.
HASHES_CACHED = 1 << 16


def tokenize(text: str) -> list[str]:
    """Split a post into the tokens the model hashes."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(text):
        kind, value = match.lastgroup, match.group()
        if kind == "url":
            tokens.append("<url>")
        elif kind == "mention":
            tokens.append("<mention>")
        elif kind == "number":
            tokens.append("<num>")
        elif kind == "hashtag":
            tag = value.lower()
            tokens.extend((tag, tag[1:]))
        elif kind == "emoticon":
            tokens.append(value.upper())
        else:
            tokens.append(value.lower())
    return tokens


def grams(tokens: Sequence[str], ngrams: int) -> list[str]:
    """The words, then the word pairs (and longer n-grams up to ``ngrams``), of a token list."""
    return [" ".join(tokens[i : i + n]) for n in range(1, ngrams + 1) for i in range(len(tokens) - n + 1)]


def build_vocabulary(texts: Iterable[str], config: ModelConfig, min_posts: int = 2) -> tuple[str, ...]:
    """The grams used by at least ``min_posts`` of ``texts``, most used first (ties by the gram), at most
    ``config.text_vocabulary`` of them.

    >>> build_vocabulary(["not good", "not bad", "good"], ModelConfig(text_vocabulary=10))
    ('good', 'not')
    """
    posts_using = Counter(gram for text in texts for gram in set(grams(tokenize(text), config.text_ngrams)))
    common = sorted((gram for gram, count in posts_using.items() if count >= min_posts),
                    key=lambda gram: (-posts_using[gram], gram))
    return tuple(common[: config.text_vocabulary])


class TextHasher:
    """Deterministic token ids (unigrams up to ``config.text_ngrams``-grams) for a post: a vocabulary
    gram's own id, or a hashed one.

    >>> TextHasher(ModelConfig(text_buckets=50, text_ngrams=1)).encode("") == []
    True
    >>> hasher = TextHasher(ModelConfig(text_buckets=50, text_vocabulary=2), vocabulary=("good", "not"))
    >>> ids = hasher.encode("not good at all")
    >>> ids[:2], all(2 <= i < 50 for i in ids[2:])   # "not", "good": their own ids; the rest hashed
    ([1, 0], True)
    """

    def __init__(self, config: ModelConfig, vocabulary: Sequence[str] = ()) -> None:
        if len(vocabulary) > config.text_vocabulary:
            raise ValueError(f"a vocabulary of {len(vocabulary)} grams; the config allows {config.text_vocabulary}")
        self.buckets = config.text_buckets
        self.ngrams = config.text_ngrams
        self.salt = config.text_hash_salt.encode()[:16]  # blake2b takes at most 16 salt bytes
        self.priors = config.word_priors
        self.prior_buckets = config.prior_buckets
        self.vocabulary = tuple(vocabulary)
        self._vocabulary_ids = {gram: i for i, gram in enumerate(self.vocabulary)}

    def token_id(self, token: str) -> int:
        known = self._vocabulary_ids.get(token)
        if known is not None:
            return known
        return len(self.vocabulary) + _hash64(token, self.salt, b"") % (self.buckets - len(self.vocabulary))

    def prior_id(self, token: str) -> int:
        """A word's id in the lexicon features' own space (models/word_priors.py), after the
        ``text_buckets`` ids of the word vectors, so that no word pair ever lands on a lexicon word."""
        return self.buckets + _hash64(token, self.salt, b"word-prior") % self.prior_buckets

    def encode(self, text: str) -> list[int]:
        """Ids of the words and word pairs; with ``word_priors``, each word's prior id first (at most
        :data:`MAX_TOKENS` ids in all, so a long post keeps fewer of its pairs)."""
        tokens = tokenize(text)
        priors = [self.prior_id(token) for token in tokens[:MAX_TOKENS // 2]] if self.priors else []
        return priors + [self.token_id(gram) for gram in grams(tokens, self.ngrams)[:MAX_TOKENS - len(priors)]]

    def describe(self) -> dict[str, Any]:
        """What a checkpoint must record to hash text identically later."""
        return {
            "tokenizer_version": TOKENIZER_VERSION,
            "hash": "blake2b-64",
            "salt": self.salt.decode(),
            "buckets": self.buckets,
            "ngrams": self.ngrams,
            **({"word_priors": list(self.priors), "prior_buckets": self.prior_buckets} if self.priors else {}),
            **({"vocabulary": list(self.vocabulary)} if self.vocabulary else {}),
        }


@functools.lru_cache(maxsize=HASHES_CACHED)
def _hash64(token: str, salt: bytes, person: bytes) -> int:
    """A gram's 64-bit blake2b hash (remembered: hashing was most of a post's tokenizing)."""
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8, salt=salt, person=person).digest(), "little")
