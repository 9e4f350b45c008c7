"""A minimal faust app for the foundation smoke test: words → repartition by word → counts table.

Run: python faust_counter_app.py worker   (settings from MOODSHIFT_* variables)
"""

import faust

from moodshift.pipeline.settings import Settings

settings = Settings.load()
app = faust.App(
    settings.topic("counter-app"),
    broker=settings.faust_broker_url(),
    broker_credentials=settings.faust_broker_credentials(),
    store="memory://",
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    datadir=str(settings.state_dir / "faust"),
    web_enabled=False,
)
lines = app.topic(settings.topic("lines"), key_type=str, value_type=str)
counts = app.Table("counts", default=int, partitions=settings.partitions)


@app.agent(lines)
async def count_words(stream):
    # group_by forces a repartition topic: records for one word meet on one partition.
    async for word in stream.group_by(lambda word: word, name="by-word"):
        counts[word] += 1


if __name__ == "__main__":
    app.main()
