"""Bad input, fuzzed: every bad record ends in the dead letters with a reason, nothing crashes, and
the counts add up.

Hypothesis draws the records: random bytes, partial JSON, invalid UTF-8, deep nesting, huge numbers
and fields, wrong types, unknown fields, lone surrogates, extreme timestamps, and valid posts and
videos whose images, frames or audio are corrupt or missing from the media store.

**The identity**, checked per record. A record read by the worker from ``posts``/``videos`` is
exactly one of: *rejected* (invalid: one dead letter holding its bytes, with the reason the schema
gives offline), *late* (valid, behind its user's watermark: one ``late`` dead letter naming its
event id), or *windowed* (valid: counted by ``moodshift_events_windowed_total``). Independently,
each image, frame or audio track of a valid event that cannot be read or decoded adds one
``undecodable_media`` dead letter naming the event (its text and other media are kept). So, per
batch::

    records_in          = windowed + rejected + late
    dead letters (all)  = rejected + late + bad media items

Over HTTP, every item is answered ``accepted`` (then it is a posts record, as above) or ``rejected``
(one dead letter from source ``http`` with the same reason); a body that is not JSON is answered 400
and dead-lettered once.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings as hyp_settings, strategies as st
from kafka import KafkaConsumer, TopicPartition
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from moodshift.connectors import topics
from moodshift.connectors.http_ingest import IngestServer
from moodshift.connectors.ingest import Ingestor
from moodshift.connectors.media import MediaStore
from moodshift.connectors.producer import EventProducer, RecordingClient
from moodshift.connectors.record import Reason, Rejected
from moodshift.connectors.schemas import DEAD_LETTER_MAX_ORIGINAL_BYTES, DeadLetter, MarketTick, MediaRef, Post, VideoClip, WeatherObservation
from moodshift.connectors.topics import ensure_topics
from moodshift.pipeline.local.net import free_port
from moodshift.pipeline.settings import Settings
from moodshift.pipeline.worker.runtime import WorkerRuntime
from tests.connectors.standins import Reply, StandIn
from tests.pipeline.worker.test_worker_kafka import tiny_checkpoint
from tests.pipeline.worker.worker_process import WorkerProcess

START = datetime(2016, 6, 1, tzinfo=timezone.utc)
REASONS = {reason.value for reason in Reason}
QUICK = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), (20, 200, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, samples)
    return buffer.getvalue()


# -- strategies ------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
odd_times = st.one_of(
    # any instant with any offset: year 1 at +14:00 or year 9999 at -12:00 overflow UTC
    st.builds(lambda t, minutes: t.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
              st.datetimes(), st.integers(-14 * 60 + 1, 14 * 60 - 1)),
    st.datetimes().map(datetime.isoformat),  # no offset
    st.sampled_from(["", "yesterday", "2016-13-01T00:00:00Z", "1969-12-31T23:59:59Z", "3000-01-01T00:00:00Z",
                     "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "2016-06-01T00:00:00\ud800Z"]),
    json_values,
)
texts = st.one_of(st.text(max_size=40), st.just("x" * 300_000), st.just("\ud800 lonely"),
                  st.text(alphabet="😀😡🙂", min_size=1000, max_size=2000))


@st.composite
def valid_post(draw: st.DrawFn, user: str | None = None, prefix: str = "") -> dict[str, Any]:
    """A valid post dict in the two days after START (a user of its own unless one is given);
    ``prefix`` starts its ids, so that one example's ids differ from another's."""
    n = draw(st.integers(0, 2**40))
    return {"schema_version": 1, "event_id": f"{prefix}p{n}", "user_id": user or f"{prefix}solo{n}",
            "event_time": (START + timedelta(seconds=draw(st.integers(0, 2 * 86_400)))).isoformat(),
            "text": draw(st.text(max_size=30)), "source": "fuzz"}


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[dict]) -> dict[str, Any]:
    """A record dict with one field changed, removed or added."""
    record = dict(draw(base))
    field = draw(st.sampled_from(sorted(record) + ["mood", "media", "schema_version"]))
    action = draw(st.sampled_from(["value", "delete", "time", "text"]))
    if action == "delete":
        record.pop(field, None)
    elif action == "time":
        record["event_time"] = draw(odd_times)
    elif action == "text":
        record["text"] = draw(texts)
    else:
        record[field] = draw(json_values)
    return record


def encoded(draw: st.DrawFn, value: Any) -> bytes:
    """JSON bytes, possibly damaged: truncated, invalid UTF-8 inserted."""
    raw = json.dumps(value, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "truncate", "bad_utf8"]))
    if damage == "truncate" and raw:
        return raw[:draw(st.integers(0, len(raw) - 1))]
    if damage == "bad_utf8":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + raw[at:]
    return raw


@st.composite
def raw_records(draw: st.DrawFn) -> bytes:
    """Any bytes a producer could put on an input topic."""
    kind = draw(st.sampled_from(["bytes", "json", "post", "mutated", "nesting", "bignum"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return encoded(draw, draw(json_values))
    if kind == "post":
        return encoded(draw, draw(valid_post()))
    if kind == "nesting":
        return draw(st.sampled_from([b"[", b'{"a":'])) * draw(st.integers(1, 100_000))
    if kind == "bignum":
        return b'{"event_id": "n", "user_id": "u", "event_time": ' + b"9" * draw(st.integers(1, 10_000)) + b"}"
    return encoded(draw, draw(mutated(valid_post())))


# -- plain Python: decoding never raises -----------------------------------------------------------

@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> WorkerRuntime:
    folder = tmp_path_factory.mktemp("fuzz-runtime")
    return WorkerRuntime.from_settings(Settings(model_checkpoint=tiny_checkpoint(folder / "model.pt"),
                                                state_dir=folder, device="cpu"))


@hyp_settings(max_examples=400, **QUICK)
@given(raw=raw_records())
def test_decoding_any_bytes_gives_an_event_or_one_dead_letter_never_an_exception(runtime: WorkerRuntime,
                                                                                raw: bytes) -> None:
    for name, schema in ((topics.POSTS, Post), (topics.VIDEOS, VideoClip)):
        events, dead = runtime.decode([(runtime.settings.topic(name), b"k", raw)])
        assert len(events) + len(dead) == 1
        try:
            expected = schema.from_json_bytes(raw)
        except Rejected as error:
            (key, value), = dead
            letter = DeadLetter.from_json_bytes(value)
            assert (key, letter.reason, letter.topic) == (b"k", error.reason, name) and letter.reason in REASONS
            assert letter.original == raw[:DEAD_LETTER_MAX_ORIGINAL_BYTES] and letter.original_size == len(raw)
        else:
            assert events[0].event == expected
            assert schema.from_json_bytes(expected.to_json_bytes()) == expected  # can be written back
    for schema in (WeatherObservation, MarketTick, DeadLetter, MediaRef):
        try:
            schema.from_json_bytes(raw)
        except Rejected as error:
            assert error.reason in REASONS
            str(error).encode()  # a message a dead letter can carry
    letter = runtime.add_context(runtime.settings.topic(topics.WEATHER), raw)
    assert letter is None or DeadLetter.from_json_bytes(letter[1]).reason in REASONS


@hyp_settings(max_examples=300, **QUICK)
@given(item=st.one_of(mutated(valid_post()), json_values, valid_post().map(lambda p: {**p, "kind": "video"})))
def test_ingesting_any_item_accepts_it_or_dead_letters_it_once(item: Any, tmp_path_factory) -> None:
    settings = Settings(media_dir=tmp_path_factory.getbasetemp() / "ingest-media", max_clock_skew_seconds=300)
    producer = EventProducer(settings, "fuzz", client=RecordingClient())
    ingestor = Ingestor(settings, producer, source="fuzz")
    raw = json.dumps(item).encode()
    outcome = ingestor.submit_object(item, raw) if isinstance(item, dict) else ingestor.submit(raw)
    json.dumps(outcome.to_dict(), ensure_ascii=False).encode()  # the HTTP answer can be written
    (topic, _, value), = producer.client.sent
    if outcome.accepted:
        assert topic == settings.topic(outcome.topic)
        Post.from_json_bytes(value)
    else:
        letter = DeadLetter.from_json_bytes(value)
        assert topic == settings.topic(topics.DEAD_LETTERS) and letter.reason == outcome.reason in REASONS
        assert outcome.reason != Reason.INTERNAL_ERROR, outcome.message


# -- the real worker -------------------------------------------------------------------------------

class Worker(WorkerProcess):
    """A ``moodshift worker`` subprocess on its own topics, its /metrics, and the dead-letter topic."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        super().__init__(settings, log_path, overrides=(
            "model_checkpoint", "media_dir", "window_size_seconds", "window_slide_seconds",
            "allowed_lateness_seconds", "worker_web_port", "batch_max_wait_ms", "device"))
        self.letters = KafkaConsumer(**settings.kafka_python_config(), enable_auto_commit=False)
        partitions = [TopicPartition(settings.topic(topics.DEAD_LETTERS), p) for p in range(settings.partitions)]
        self.letters.assign(partitions)
        self.letters.seek_to_beginning()

    def metrics(self) -> Counter:
        """Every sample of the worker's /metrics, by (name, sorted labels)."""
        assert self.alive(), "the worker died:\n" + self.log_tail()
        text = self.get("/metrics").decode()
        return Counter({(s.name, tuple(sorted(s.labels.items()))): s.value
                        for family in text_string_to_metric_families(text) for s in family.samples})

    def settle(self, before: Counter, records: int, other_letters: int = 0,
               timeout: float = 120) -> tuple[Counter, list[DeadLetter]]:
        """Wait until the worker has processed ``records`` more input records and every dead letter
        its metric says it made is read back, with ``other_letters`` letters from other sources (the
        HTTP ingest); then read the topic to its end, so that a letter sent twice shows. The metric
        deltas and the letters.

        Processed: each record is windowed or is one dead letter (rejected, late), and a batch counts
        its windowed events last, after its letters (media ones too) were made. Waiting for a number
        of letters instead stopped early once late letters, which nobody can count beforehand, made
        up the number: the media letters still on their way were read by the next example, whose
        event ids Hypothesis may draw again (one event of a replayed example had 3 letters for 2
        unreadable items)."""
        found: list[DeadLetter] = []
        deadline = time.monotonic() + timeout
        while True:
            for batch in self.letters.poll(timeout_ms=300).values():
                found += [DeadLetter.from_json_bytes(r.value) for r in batch]
            delta = self.metrics() - before
            read = sum(counts(delta, "moodshift_records_in_total").values())
            windowed = counts(delta, "moodshift_events_windowed_total")[""]
            made = sum(counts(delta, "moodshift_dead_letters_total").values())
            from_worker = [letter for letter in found if letter.source == "worker"]
            one_per_record = sum(letter.reason != "undecodable_media" for letter in from_worker)
            if (read >= records and windowed + one_per_record >= records and len(from_worker) >= made
                    and len(found) - len(from_worker) >= other_letters):
                break
            assert time.monotonic() < deadline, (
                f"not settled after {timeout} s: {read} of {records} records read, {windowed} windowed, "
                f"{len(from_worker)} of {made} worker letters read ({one_per_record} rejected or late), "
                f"{len(found) - len(from_worker)} of {other_letters} others\n" + self.log_tail())
        ends = self.letters.end_offsets(list(self.letters.assignment()))
        while any(self.letters.position(tp) < end for tp, end in ends.items()):
            for batch in self.letters.poll(timeout_ms=300).values():
                found += [DeadLetter.from_json_bytes(r.value) for r in batch]
        return self.metrics() - before, found

    def stop(self, timeout: float = 60) -> None:
        self.letters.close()
        super().stop(timeout)


@pytest.fixture(scope="module")
def worker(kafka_cluster: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    folder = tmp_path_factory.mktemp("fuzz-worker")
    settings = kafka_cluster.replace(
        topic_prefix=f"fz{uuid.uuid4().hex[:8]}.", state_dir=folder / "state", media_dir=folder / "media",
        model_checkpoint=tiny_checkpoint(folder / "model.pt"), window_size_seconds=3600, window_slide_seconds=1800,
        allowed_lateness_seconds=0, worker_web_port=free_port(), batch_max_wait_ms=100, device="cpu",
        retention_hours=24 * 365 * 30, fetch_allow_private=True, max_clock_skew_seconds=10 ** 11,
    )
    ensure_topics(settings, topics.ALL_TOPICS)
    running = Worker(settings, folder / "worker.log")
    try:
        running.wait_ready(timeout=180)
        yield running
    finally:
        running.stop()


def counts(delta: Counter, name: str) -> Counter:
    """A metric's deltas by its one label value (or "" without labels)."""
    return Counter({(labels[0][1] if labels else ""): v for (n, labels), v in delta.items() if n == name and v})


@st.composite
def media_refs(draw: st.DrawFn, store: MediaStore, kind: str) -> tuple[MediaRef, bool]:
    """A reference of ``kind`` (image, audio) and whether the worker can read it."""
    choice = draw(st.sampled_from(["good", "corrupt", "missing", "truncated"]))
    if kind == "image":
        good, content_type = png_bytes(), draw(st.sampled_from(["image/png", "image/jpeg"]))
    else:
        good, content_type = npy_bytes(np.sin(np.arange(1600, dtype=np.float32))), "application/x-npy"
    if choice == "missing":
        return MediaRef(sha256=draw(st.binary(min_size=32, max_size=32)).hex(), content_type=content_type,
                        size_bytes=10), False
    data = {"good": good, "corrupt": draw(st.binary(max_size=64)) + b"\x00not media",
            "truncated": good[:len(good) // 2]}[choice]
    return store.put(data, content_type), choice == "good"


@st.composite
def worker_records(draw: st.DrawFn, store: MediaStore, users: list[str], prefix: str) -> tuple[str, bytes, int]:
    """(logical topic, value, bad media items): fuzzed bytes, or a valid post/video with media (ids
    starting with ``prefix``)."""
    kind = draw(st.sampled_from(["raw", "raw", "post", "video"]))
    if kind == "raw":
        return draw(st.sampled_from([topics.POSTS, topics.VIDEOS])), draw(raw_records()), 0
    fields = draw(valid_post(draw(st.sampled_from(users + [None])), prefix))
    refs = [draw(media_refs(store, "image")) for _ in range(draw(st.integers(0, 2)))]
    bad = sum(not ok for _, ok in refs)
    if kind == "post":
        return topics.POSTS, Post.from_dict({**fields, "media": [r.to_dict() for r, _ in refs]}).to_json_bytes(), bad
    audio, audio_ok = draw(st.one_of(st.none(), media_refs(store, "audio"))) or (None, True)
    clip = VideoClip.from_dict({
        **{k: v for k, v in fields.items() if k != "event_id"}, "event_id": "v" + fields["event_id"],
        "clip": MediaRef(sha256="0" * 64, content_type="video/mp4", size_bytes=1).to_dict(),
        "duration_s": 2.0, "frame_rate": 25.0, "width": 6, "height": 4,
        "frames": [r.to_dict() for r, _ in refs], "frame_times_s": [float(i) for i in range(len(refs))],
        "audio": audio.to_dict() if audio else None, "audio_sample_rate": 16_000 if audio else None,
    })
    return topics.VIDEOS, clip.to_json_bytes(), bad + (not audio_ok)


def expected_rejection(topic: str, value: bytes) -> str | None:
    schema = Post if topic == topics.POSTS else VideoClip
    try:
        schema.from_json_bytes(value)
    except Rejected as error:
        return error.reason
    return None


@pytest.mark.kafka
@hyp_settings(max_examples=10, phases=[Phase.generate], **QUICK)
@given(data=st.data())
def test_fuzzed_records_in_the_input_topics_are_windowed_or_dead_lettered(worker: Worker, data: st.DataObject) -> None:
    settings = worker.settings
    store = MediaStore(settings.media_dir)
    nonce = uuid.uuid4().hex[:8]  # Hypothesis may draw the same ids again, in a replay too
    users = [f"fan{nonce}{k}" for k in range(2)]  # two users who post several times
    batch = data.draw(st.lists(worker_records(store, users, nonce), min_size=8, max_size=20), label="records")
    before = worker.metrics()
    with EventProducer(settings, source="fuzz") as producer:
        for topic, value, _ in batch:
            producer.client.send(settings.topic(topic), key=b"fuzz", value=value)
    rejected = [(topic, value, reason) for topic, value, _ in batch
                if (reason := expected_rejection(topic, value)) is not None]
    bad_media = sum(bad for topic, value, bad in batch if expected_rejection(topic, value) is None)
    valid_ids = Counter(json.loads(v)["event_id"] for t, v, _ in batch if expected_rejection(t, v) is None)
    delta, letters = worker.settle(before, len(batch))
    late = Counter(json.loads(l.original)["event_id"] for l in letters if l.reason == "late")

    assert sum(counts(delta, "moodshift_records_in_total").values()) == len(batch)
    assert counts(delta, "moodshift_events_windowed_total")[""] + len(rejected) + late.total() == len(batch)
    assert counts(delta, "moodshift_processing_errors_total") == Counter()
    # Per record: each rejected one is one dead letter with its bytes and the schema's reason ...
    got = Counter((l.topic, l.original, l.original_size, l.reason) for l in letters
                  if l.reason not in ("undecodable_media", "late"))
    want = Counter((t, v[:DEAD_LETTER_MAX_ORIGINAL_BYTES], len(v), r) for t, v, r in rejected)
    assert got == want
    # ... a late one is a valid one, once; each unreadable image, frame or audio adds a letter.
    assert late <= valid_ids
    media_letters = Counter(json.loads(l.original)["event_id"] for l in letters if l.reason == "undecodable_media")
    assert media_letters.total() == bad_media and set(media_letters) <= set(valid_ids)
    assert counts(delta, "moodshift_dead_letters_total") == Counter(l.reason for l in letters)
    assert worker.alive(), "the worker died:\n" + worker.log_tail()


@pytest.fixture(scope="module")
def media() -> Iterator[str]:
    """A stand-in media server: a PNG, a corrupt PNG, a video that is not one; its base URL."""
    server = StandIn()
    server.route("/cat.png", Reply(body=png_bytes(), headers={"Content-Type": "image/png"}))
    server.route("/corrupt.png", Reply(body=b"\x89PNG\r\n\x1a\nrubbish", headers={"Content-Type": "image/png"}))
    server.route("/broken.mp4", Reply(body=b"\x00\x00\x00\x18ftypmp42 not a video", headers={"Content-Type": "video/mp4"}))
    yield server.url
    server.close()


@pytest.mark.kafka
@hyp_settings(max_examples=8, phases=[Phase.generate], **QUICK)
@given(data=st.data())
def test_fuzzed_http_submissions_are_accepted_or_dead_lettered_and_the_worker_keeps_up(
    worker: Worker, media: str, data: st.DataObject,
) -> None:
    settings = worker.settings.replace(ingest_http_port=0, fetch_timeout_seconds=5.0,
                                       max_clock_skew_seconds=300, ingest_http_max_body_bytes=2_000_000)
    item = st.one_of(
        valid_post(), mutated(valid_post()), json_values,
        valid_post().map(lambda p: {**p, "media_urls": [media + "/corrupt.png"]}),  # accepted; the worker rejects the image
        valid_post().map(lambda p: {**p, "media_urls": [media + "/cat.png"]}),
        valid_post().map(lambda p: {k: v for k, v in p.items() if k not in ("text", "schema_version")}
                         | {"kind": "video", "url": media + "/broken.mp4"}),
        valid_post().map(lambda p: {**p, "media_urls": ["http://[::1"]}),
    )
    items = data.draw(st.lists(item, min_size=3, max_size=10), label="items")
    body = data.draw(st.one_of(st.just(None), raw_records()), label="raw body")  # None: the items as JSON
    before = worker.metrics()
    with EventProducer(settings, source="http") as producer:
        server = IngestServer(settings, Ingestor(settings, producer, source="http"))
        server.start()
        try:
            sent = json.dumps(items).encode() if body is None else body
            answer = requests.post(server.url + "/v1/events", data=sent, timeout=60)
        finally:
            server.stop()
    if answer.status_code == 400:
        accepted, rejected = [], [("malformed_json", sent)]
        assert answer.json()["error"] == "malformed_json"
    else:
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        payload = json.loads(sent)
        assert len(results) == (len(payload) if isinstance(payload, list) else 1)
        accepted = [r for r in results if r["status"] == "accepted"]
        rejected = [(r["reason"], None) for r in results if r["status"] == "rejected"]
        assert all(r["reason"] in REASONS and r["reason"] != "internal_error" for r in results if "reason" in r)
    corrupt_images = sum(1 for r, i in zip(answer.json().get("results", []), items if body is None else [])
                         if r["status"] == "accepted" and media + "/corrupt.png" in i.get("media_urls", []))
    delta, letters = worker.settle(before, len(accepted), other_letters=len(rejected))
    from_http = [l for l in letters if l.source == "http"]
    assert sorted(l.reason for l in from_http) == sorted(reason for reason, _ in rejected)
    if body is not None and answer.status_code == 400:
        assert from_http[0].original == sent[:DEAD_LETTER_MAX_ORIGINAL_BYTES]
    from_worker = Counter(l.reason for l in letters if l.source == "worker")
    assert counts(delta, "moodshift_events_windowed_total")[""] + from_worker["late"] == len(accepted)
    assert from_worker - Counter(late=from_worker["late"]) == Counter(undecodable_media=corrupt_images)
    assert worker.alive(), "the worker died:\n" + worker.log_tail()
