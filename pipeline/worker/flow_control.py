"""faust's flow control, without dropping the events of a stream that is already flowing.

faust (through mode's ``FlowControlEvent``) clears every stream's queue of delivered events each time
``app.flow_control.resume()`` is called, whether or not the flow was suspended. Its table recovery
calls it twice on the way up: once when it starts reading the changelogs, and again after it has
resumed the input partitions and sought them to their committed offsets
(``Recovery.on_recovery_completed``). Records fetched between those two calls, already counted as
consumed by the Kafka client, were thrown away with the queue. The worker's gate
(:mod:`pipeline.worker.positions`) notices missing offsets only when a later event arrives; when the
dropped records were the partition's last, nothing ever came (issue 12, make test and make stress:
a worker restarted after kill -9 applied part of the posts waiting for it, then sat idle, its agent
waiting for events and its consumer lag zero, until the test timed out).

:class:`FlowControl` clears queues only when the flow resumes after a suspension, the case faust
means it for (a rebalance suspends the flow and clears the queues itself; the partitions are then
sought back to their committed offsets before it resumes). A stream that keeps events fetched before
a seek is safe here: the gate drops duplicates and re-reads a partition whose events come out of
order.
"""

from __future__ import annotations

import logging

from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)


class FlowControl(FlowControlEvent):
    """A ``FlowControlEvent`` whose ``resume`` clears the queues only if the flow was suspended.

    >>> from mode.utils.queues import FlowControlQueue
    >>> flow = FlowControl(initially_suspended=False)
    >>> queue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    >>> queue.put_nowait("a fetched record")
    >>> flow.resume(); queue.qsize()  # flowing already: kept
    1
    >>> flow.suspend(); flow.resume(); queue.qsize()  # resumed after a suspension: cleared
    0
    """

    def resume(self) -> None:
        if self.is_active():
            queued = sum(queue.qsize() for queue in self._queues)
            if queued:
                log.info("flow resumed while flowing: kept %d delivered events that faust would have dropped", queued)
            return
        super().resume()
