"""A downstream consumer of moodshift's emotion changes, for marketing and product teams.

    pip install kafka-python jsonschema
    python docs/example_consumer.py --bootstrap-servers 127.0.0.1:9092 --topic moodshift.emotion-changes

Delivery is at-least-once: the same change point may arrive twice (after a worker restart), always
with the same ``change_id``; this consumer keeps the ids it has seen and skips repeats. Records of a
user arrive in order (the key is the user id, so one user lives on one partition).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kafka import KafkaConsumer

SCHEMA = Path(__file__).resolve().parent.parent / "pipeline" / "schemas" / "emotion-change.v1.json"


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
        print(f'{change["event_time"]}  {change["user_id"]}: {change["from_emotion"]} → '
              f'{change["to_emotion"]}  (confidence {change["confidence"]:.2f})', flush=True)
        if args.max_records and len(seen) >= args.max_records:
            break
    consumer.close()


if __name__ == "__main__":
    main()
