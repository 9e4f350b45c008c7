"""FeatureExtractor: media from a real store through real decoders and a real (random) backbone."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg, encode_png

from moodshift.connectors.media import MediaStore
from moodshift.connectors.record import utc_now
from moodshift.connectors.schemas import Post, VideoClip
from moodshift.models.audio import audio_summary
from moodshift.models.config import ModelConfig
from moodshift.models.image import ImageEncoder
from moodshift.models.text import TextHasher
from moodshift.pipeline.stream.features import FeatureExtractor

MELS = 16


@pytest.fixture(scope="module")
def encoder() -> ImageEncoder:
    return ImageEncoder("resnet18", weights=None, allow_random=True)


def picture(seed: int, encode=encode_png) -> bytes:
    pixels = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return bytes(encode(pixels).numpy())


def extractor(tmp_path: Path, encoder: ImageEncoder, batch: int = 32) -> FeatureExtractor:
    return FeatureExtractor(TextHasher(ModelConfig()), MediaStore(tmp_path / "media"), encoder, MELS,
                            image_batch_size=batch)


def post(event_id: str, text: str = "", media: tuple = ()) -> Post:
    return Post(event_id=event_id, user_id="u", event_time=utc_now(), text=text, media=media, source="test")


def test_each_event_gets_its_own_text_and_image_rows_in_order(tmp_path: Path, encoder: ImageEncoder) -> None:
    features = extractor(tmp_path, encoder)
    store = features.media
    a, b, c = (store.put(picture(k), "image/png") for k in range(3))
    jpeg = store.put(picture(3, encode_jpeg), "image/jpeg")
    events = [post("p1", "so happy today", (a, b)), post("p2", "", ()), post("p3", "meh", (c, jpeg))]
    (f1, p1), (f2, p2), (f3, p3) = features.extract(events)
    assert (p1, p2, p3) == ([], [], [])
    assert f1.tokens == TextHasher(ModelConfig()).encode("so happy today") and f2.tokens == []
    assert f1.image.shape == (2, 512) and f2.image is None and f3.image.shape == (2, 512)
    # The rows are the backbone's features of each event's own pictures, whatever else shares the batch.
    alone = features.extract([post("p4", "", (c, jpeg))])[0][0].image
    np.testing.assert_allclose(f3.image, alone, rtol=1e-4, atol=1e-5)
    assert not np.allclose(f1.image[0], f3.image[0])


def test_the_backbone_batch_size_changes_no_feature(tmp_path: Path, encoder: ImageEncoder) -> None:
    refs = tuple(extractor(tmp_path, encoder).media.put(picture(k), "image/png") for k in range(5))
    events = [post("p1", "x", refs[:3]), post("p2", "y", refs[3:])]
    big = extractor(tmp_path, encoder, batch=32).extract(events)
    small = extractor(tmp_path, encoder, batch=2).extract(events)
    for (one, _), (other, _) in zip(big, small):
        np.testing.assert_allclose(one.image, other.image, rtol=1e-4, atol=1e-5)


def test_an_undecodable_image_is_a_problem_and_the_event_keeps_its_text(tmp_path: Path,
                                                                        encoder: ImageEncoder) -> None:
    features = extractor(tmp_path, encoder)
    broken = features.media.put(b"\x89PNG\r\n\x1a\n not really a png", "image/png")
    video_ref = features.media.put(b"not decoded here", "video/mp4")  # the video connector's job
    ((feature, problems),) = features.extract([post("p1", "still counted", (broken, video_ref))])
    assert feature.tokens and feature.image is None
    assert [reason for reason, _ in problems] == ["undecodable_media"]
    assert broken.sha256[:12] in problems[0][1]


def test_a_clip_gives_frame_rows_and_the_audio_summary_of_its_track(tmp_path: Path, encoder: ImageEncoder) -> None:
    features = extractor(tmp_path, encoder)
    store = features.media
    samples = np.sin(np.linspace(0, 400 * np.pi, 16_000)).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, samples, allow_pickle=False)
    clip = VideoClip(event_id="v1", user_id="u", event_time=utc_now(), clip=store.put(b"mp4", "video/mp4"),
                     duration_s=1.0, frame_rate=25.0, width=64, height=48,
                     frames=(store.put(picture(1), "image/png"), store.put(picture(2), "image/png")),
                     frame_times_s=(0.0, 0.5), frames_per_second=2.0,
                     audio=store.put(buffer.getvalue(), "application/x-npy"), audio_sample_rate=16_000)
    broken_audio = VideoClip(**{**clip.__dict__, "event_id": "v2", "audio": store.put(b"junk", "application/x-npy")})
    (good, good_problems), (bad, bad_problems) = features.extract([clip, broken_audio])
    assert good_problems == [] and good.image.shape == (2, 512)
    np.testing.assert_allclose(good.audio, audio_summary(samples, 16_000, MELS))
    assert bad.audio is None and bad.image.shape == (2, 512)
    assert [reason for reason, _ in bad_problems] == ["undecodable_media"]
