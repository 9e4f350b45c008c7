"""The worker's plain-Python runtime (no Kafka): dead letters keep what came in, under the topic it
came from."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from moodshift.connectors import topics
from moodshift.connectors.record import Rejected
from moodshift.connectors.schemas import DeadLetter, MediaRef, Post, VideoClip, WeatherObservation
from moodshift.pipeline.settings import Settings
from moodshift.models.checkpoint import load_checkpoint, save_checkpoint
from moodshift.models.detector import DetectorConfig
from moodshift.pipeline.worker.runtime import WorkerRuntime, detector_config
from tests.pipeline.worker.test_worker_kafka import tiny_checkpoint

START = datetime(2016, 6, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> WorkerRuntime:
    folder = tmp_path_factory.mktemp("runtime")
    return WorkerRuntime.from_settings(Settings(
        model_checkpoint=tiny_checkpoint(folder / "model.pt"), state_dir=folder, device="cpu",
        window_size_seconds=3600, window_slide_seconds=1800, allowed_lateness_seconds=0))


def letters(outputs: list[tuple[bytes | None, bytes]]) -> list[DeadLetter]:
    return [DeadLetter.from_json_bytes(value) for _, value in outputs]


def test_a_late_event_is_dead_lettered_whole_under_its_own_topic(runtime: WorkerRuntime) -> None:
    settings = runtime.settings
    early = [Post(event_id=f"p{i}", user_id="u", event_time=START + timedelta(hours=i), text="fine day",
                  source="test") for i in range(4)]
    late_post = Post(event_id="late-post", user_id="u", event_time=START, text="too late", source="test")
    late_video = VideoClip(event_id="late-video", user_id="u", event_time=START, duration_s=2.0, frame_rate=25.0,
                           width=8, height=8, text="a late clip",
                           clip=MediaRef(sha256="0" * 64, content_type="video/mp4", size_bytes=10))
    first = runtime.process(runtime.decode(
        [(settings.topic(topics.POSTS), b"u", post.to_json_bytes(), None) for post in early])[0], {}, 0)
    assert first.dead_letters == []
    events, dead = runtime.decode([(settings.topic(topics.POSTS), b"u", late_post.to_json_bytes(), None),
                                   (settings.topic(topics.VIDEOS), b"u", late_video.to_json_bytes(), None)])
    assert dead == []
    late = letters(runtime.process(events, first.records, 0).dead_letters)
    assert [(letter.topic, letter.reason) for letter in late] == [("posts", "late"), ("videos", "late")]
    assert Post.from_json_bytes(late[0].original) == late_post  # the whole event: it can be replayed
    assert VideoClip.from_json_bytes(late[1].original) == late_video
    assert "behind the user's watermark" in late[0].message


def test_an_invalid_context_record_becomes_a_dead_letter_a_valid_one_does_not(runtime: WorkerRuntime) -> None:
    weather = runtime.settings.topic(topics.WEATHER)
    valid = WeatherObservation(location_id="x", latitude=1.0, longitude=2.0, observed_time=START,
                               temperature_c=20.0, kind="hourly")
    assert runtime.add_context(weather, valid.to_json_bytes()) is None
    invalid = b'{"location_id": "x", "temperature_c": "warm"}'
    with pytest.raises(Rejected) as rejected:
        WeatherObservation.from_json_bytes(invalid)
    key, value = runtime.add_context(weather, invalid, b"x", where="weather[0]@7")
    letter = DeadLetter.from_json_bytes(value)
    assert (key, letter.topic, letter.reason, letter.original) == (b"x", "weather", rejected.value.reason, invalid)
    assert letter.message.startswith("weather[0]@7 ")


def test_the_worker_detects_with_the_checkpoints_tuned_settings_unless_told_otherwise(tmp_path) -> None:
    path = tiny_checkpoint(tmp_path / "model.pt")
    _, untuned = load_checkpoint(path)
    assert detector_config(Settings(), untuned) == DetectorConfig()  # an older checkpoint: the defaults
    tuned = dataclasses.replace(untuned, detector=dataclasses.asdict(
        DetectorConfig(enter_threshold=0.6, margin=0.0, min_dwell=3, change_threshold=0.7, signal_dwell=1)))
    assert detector_config(Settings(), tuned) == DetectorConfig(enter_threshold=0.6, margin=0.0, min_dwell=3,
                                                                change_threshold=0.7, signal_dwell=1)
    told = detector_config(Settings(detector_margin=0.2, detector_min_dwell=1), tuned)
    assert (told.enter_threshold, told.margin, told.min_dwell, told.signal_dwell) == (0.6, 0.2, 1, 1)
    save_checkpoint(path, load_checkpoint(path)[0], tuned)  # and the runtime reads it from the file
    runtime = WorkerRuntime.from_settings(Settings(model_checkpoint=path, state_dir=tmp_path, device="cpu"))
    assert runtime.processor.detector_config.enter_threshold == 0.6
