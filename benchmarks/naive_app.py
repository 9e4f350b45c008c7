"""A naive faust pipeline, the baseline of the end-to-end benchmark: ``python -m benchmarks.naive_app``.

What a first streaming version of the method would do: for **each post**, extract its features,
append a step to the user's whole history (kept in a changelog-backed table), and run the LSTM over
that history from the start: one model call per event, no batching across users, no incremental
state, no windows. It emits each event's emotion to ``emotion-steps``.

It skips what moodshift does on top (the weather/market context join, the change detector), which
only makes it faster. Settings come from ``MOODSHIFT_*`` variables like any moodshift process;
the checkpoint, media store and topics are the worker's.
"""

from __future__ import annotations

import json

import faust
import numpy as np
import torch

from moodshift.connectors import topics
from moodshift.connectors.schemas import Post
from moodshift.models.checkpoint import default_checkpoint_path
from moodshift.models.inputs import SequenceInputs, Step
from moodshift.models.timefeatures import time_features
from moodshift.pipeline.stream.features import FeatureExtractor
from moodshift.pipeline.stream.inference import InferenceEngine
from moodshift.pipeline.settings import Settings


class NaivePipeline:
    """One post → (the user's new history, the output record), recomputing over the whole history."""

    def __init__(self, engine: InferenceEngine, extractor: FeatureExtractor) -> None:
        self.engine = engine
        self.extractor = extractor

    @classmethod
    def from_settings(cls, settings: Settings) -> "NaivePipeline":
        engine = InferenceEngine.from_checkpoint(
            settings.model_checkpoint or default_checkpoint_path(settings.state_dir), settings.device)
        return cls(engine, FeatureExtractor.for_engine(engine, settings))

    def handle(self, value: bytes, history: bytes | None) -> tuple[bytes, bytes]:
        post = Post.from_json_bytes(value)
        [(features, _problems)] = self.extractor.extract([post])
        steps = json.loads(history) if history else []
        previous_s = steps[-1]["event_time_ms"] / 1000 if steps else None
        steps.append({
            "event_time_ms": post.event_time_ms,
            "text_ids": list(features.tokens) or None,
            "image": None if features.image is None else features.image.mean(axis=0).tolist(),
            "time": time_features(post.event_time_ms / 1000, previous_s).tolist(),
        })
        with torch.inference_mode():
            history_steps = [Step(time=np.asarray(s["time"], np.float32), text_ids=s["text_ids"],
                                  image=None if s["image"] is None else np.asarray(s["image"], np.float32))
                             for s in steps]
            outputs = self.engine.model(SequenceInputs.collate([history_steps], self.engine.config).to(self.engine.device))
        output = {"user_id": post.user_id, "event_id": post.event_id, "history": len(steps),
                  "emotion": outputs.emotion[0, -1].tolist(),
                  "class_probs": dict(zip(self.engine.labels, outputs.stage1_probs[0, -1].tolist()))}
        return json.dumps(steps).encode(), json.dumps(output).encode()


def build_naive_app(settings: Settings, pipeline: NaivePipeline) -> faust.App:
    """Its consumer group is ``<prefix>naive``; it reads ``posts`` and writes ``emotion-steps``."""
    (settings.state_dir / "naive").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.topic("naive"), broker=settings.faust_broker_url(),
        broker_credentials=settings.faust_broker_credentials(), store="memory://",
        topic_partitions=settings.partitions, topic_replication_factor=settings.replication_factor,
        datadir=str(settings.state_dir / "naive"), web_port=settings.worker_web_port,
        consumer_auto_offset_reset="earliest",
    )
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    posts = app.topic(settings.topic(topics.POSTS), **raw)
    outputs = app.topic(settings.topic(topics.EMOTION_STEPS), **raw)
    history = app.Table("history", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                        use_partitioner=True)

    @app.agent(posts)
    async def one_call_per_event(stream: faust.StreamT) -> None:
        async for key, value in stream.items():
            history[key], output = pipeline.handle(value, history.get(key))
            await outputs.send(key=key, value=output)

    return app


def main() -> None:
    settings = Settings.load()
    app = build_naive_app(settings, NaivePipeline.from_settings(settings))
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
