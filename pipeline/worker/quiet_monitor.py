"""faust's main sensor, without its statistics per record.

faust calls its ``Monitor`` for every record it delivers (``on_message_in``), every event a stream
hands over and every acknowledgement (``on_stream_event_in``/``_out``, ``on_message_out``), every
send and every fetched batch: counters, per-topic dictionaries and timestamps that only faust's own
web views read (``/stats``, ``/performance``). The worker's metrics are its own
(:mod:`pipeline.metrics`, ``/metrics``), and those calls took about 1% of a busy worker's CPU (a
py-spy profile of ``python -m benchmarks.drain``, docs/benchmarks.md). :class:`QuietMonitor` keeps
faust's rare hooks (commits, rebalances, assignments, web requests) and drops the per-record ones,
so faust's views show no per-record counts.

>>> from faust.types import TP
>>> monitor = QuietMonitor()
>>> monitor.on_message_in(TP("posts", 0), 7, message=None)
>>> monitor.track_tp_end_offset(TP("posts", 0), 8)
>>> monitor.messages_received_total, dict(monitor.tp_end_offsets)
(0, {})
"""

from __future__ import annotations

from typing import Any, Optional

from faust.sensors import Monitor


class QuietMonitor(Monitor):
    """A ``Monitor`` whose per-record hooks do nothing (``faust.App(..., Monitor=QuietMonitor)``)."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> Optional[dict]:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any,
                            state: Optional[dict] = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> Any:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        pass

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        pass
