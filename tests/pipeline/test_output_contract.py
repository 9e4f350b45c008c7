"""The change-point records, their JSON Schema and the example consumer agree, on the real broker."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from kafka import KafkaProducer

import moodshift.pipeline
from moodshift.connectors import topics
from moodshift.connectors.topics import ensure_topics
from moodshift.models.change_details import ChangeEvidence, StepEvidence
from moodshift.models.detector import ChangeDetector, DetectorConfig, DetectorStep
from moodshift.pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(moodshift.pipeline.__file__).parent / "schemas" / "emotion-change.v1.json").read_text())


def change_records() -> list[dict]:
    """Two change points of one user from the detector itself: the first as from an older worker
    (no evidence, no named emotions before it), the second with both."""
    detector = ChangeDetector("ann", ["negative", "positive"], "m1", DetectorConfig(min_dwell=1, signal_dwell=1),
                              named_emotions=("joy", "sadness"))
    records = []
    for hour, positive in enumerate([0.1, 0.9, 0.1]):
        named = [positive, 1 - positive] if hour else []
        step = DetectorStep([1 - positive, positive], 0.0, [1 - positive, positive], hour * 3_600_000,
                            (hour + 1) * 3_600_000, ["text", "image"], named)
        point = detector.update(step)
        if point is not None:
            records.append(point)
    plain, later = records
    # What the worker attaches to the change point from the confirming step (pipeline/stream/evidence.py).
    explained = dataclasses.replace(later, evidence=ChangeEvidence.from_step(StepEvidence(
        events={"p-3": 0.2, "p-4": 0.4}, modalities={"text": 0.5, "image": -0.1})))
    return [plain.to_json_dict(), explained.to_json_dict()]


def test_records_follow_the_schema_and_evidence_is_optional() -> None:
    plain, explained = change_records()
    validator = jsonschema.Draft202012Validator(SCHEMA)
    validator.validate(plain)
    validator.validate(explained)
    assert "evidence" not in plain and "emotions" not in plain
    assert explained["emotions"] == {"before": {"joy": 0.9, "sadness": pytest.approx(0.1)},
                                     "after": {"joy": 0.1, "sadness": 0.9}, "rose": "sadness", "fell": "joy"}
    assert explained["evidence"] == {
        "events": [{"event_id": "p-4", "effect": 0.4}, {"event_id": "p-3", "effect": 0.2}],
        "modality_effects": {"image": -0.1, "text": 0.5}, "modality_shares": {"image": 0.0, "text": 1.0}}
    broken = dict(explained, evidence={**explained["evidence"], "modality_shares": {"smell": 1.0}})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)
    # Fields added later within version 1 do not break a consumer that validates with this copy.
    validator.validate({**explained, "added_in_a_later_release": {"any": "value"}})


@pytest.mark.kafka
def test_the_example_consumer_deduplicates_and_says_what_drove_each_change(kafka_settings: Settings) -> None:
    ensure_topics(kafka_settings, [topics.EMOTION_CHANGES])
    topic = kafka_settings.topic(topics.EMOTION_CHANGES)
    plain, explained = change_records()
    producer = KafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers)
    for record in (plain, explained, explained):  # the last one is a redelivery
        producer.send(topic, key=record["user_id"].encode(), value=json.dumps(record).encode())
    producer.flush()
    producer.close()
    run = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "example_consumer.py"), "--bootstrap-servers",
         kafka_settings.bootstrap_servers, "--topic", topic, "--group", "example-test", "--idle-ms", "8000"],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines == [
        f'{plain["event_time"]}  ann: negative → positive  (confidence 0.90)',
        f'{explained["event_time"]}  ann: positive → negative, sadness rose, joy fell  '
        '(confidence 0.90; text 100%, image 0%; mostly p-4)',
    ]
