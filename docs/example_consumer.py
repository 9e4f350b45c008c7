"""A downstream consumer of moodshift's emotion changes, for marketing and product teams.

    pip install kafka-python jsonschema
    python docs/example_consumer.py --bootstrap-servers 127.0.0.1:9092 --topic moodshift.emotion-changes

Delivery is at-least-once: the same change point may arrive twice (after a worker restart), always
with the same ``change_id``; this consumer keeps the ids it has seen and skips repeats. Records of a
user arrive in order (the key is the user id, so one user lives on one partition). Each line says
what drove the change when the record carries its evidence.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kafka import KafkaConsumer

SCHEMA = Path(__file__).resolve().parent.parent / "pipeline" / "schemas" / "emotion-change.v1.json"


def describe(change: dict) -> str:
    """One line per change point: when, who, from → to, which named emotion rose and fell, what drove it.

    >>> describe({"event_time": "2016-11-09T07:00:00.000Z", "user_id": "ann", "from_emotion": "negative",
    ...           "to_emotion": "positive", "confidence": 0.812, "evidence": {
    ...               "events": [{"event_id": "p-17", "effect": 0.31}, {"event_id": "p-18", "effect": 0.05}],
    ...               "modality_effects": {"text": 0.3, "image": -0.02},
    ...               "modality_shares": {"text": 1.0, "image": 0.0}},
    ...           "emotions": {"before": {}, "after": {}, "rose": "joy", "fell": "sadness"}})
    '2016-11-09T07:00:00.000Z  ann: negative → positive, joy rose, sadness fell  (confidence 0.81; text 100%, image 0%; mostly p-17)'
    """
    emotions = change.get("emotions")  # optional, like evidence: a model without named emotions
    named = f', {emotions["rose"]} rose, {emotions["fell"]} fell' if emotions else ""
    line = (f'{change["event_time"]}  {change["user_id"]}: {change["from_emotion"]} → '
            f'{change["to_emotion"]}{named}  (confidence {change["confidence"]:.2f}')
    evidence = change.get("evidence")  # optional: older records and workers do not carry it
    if evidence:
        shares = sorted(evidence["modality_shares"].items(), key=lambda item: -item[1])
        line += "; " + ", ".join(f"{name} {share:.0%}" for name, share in shares)
        if evidence["events"]:
            line += f'; mostly {evidence["events"][0]["event_id"]}'
    return line + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="moodshift.emotion-changes")
    parser.add_argument("--group", default="marketing-example")
    parser.add_argument("--max-records", type=int, default=0, help="stop after this many (0: run forever)")
    parser.add_argument("--idle-ms", type=int, default=0, help="stop after this long without records")
    args = parser.parse_args()

    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    consumer = KafkaConsumer(
        args.topic, bootstrap_servers=args.bootstrap_servers, group_id=args.group,
        auto_offset_reset="earliest", enable_auto_commit=True,
        consumer_timeout_ms=args.idle_ms or float("inf"),
    )
    seen: set[str] = set()
    for record in consumer:
        change = json.loads(record.value)
        validator.validate(change)  # a record that breaks the contract fails loudly
        if change["change_id"] in seen:
            continue
        seen.add(change["change_id"])
        print(describe(change), flush=True)
        if args.max_records and len(seen) >= args.max_records:
            break
    consumer.close()


if __name__ == "__main__":
    main()
