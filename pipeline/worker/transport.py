"""faust's aiokafka transport as the worker uses it: its consumer commits what checkpoints hold
(:mod:`pipeline.worker.checkpoint_consumer`), its producer is idempotent in every processing guarantee.

Why idempotent: a produce request whose response is lost (a request timeout on a busy machine, a
broker restart) is sent again, and without idempotence the broker appends it twice. Outputs carry
ids to deduplicate by, but a dead letter or a changelog record written twice is counted twice.
faust turns idempotence on only for ``exactly_once`` (``Producer._settings_extra`` when
``App.in_transaction``), for its transactional producers and its plain one (the outputs) alike;
this turns it on for ``at_least_once`` too.

What it changes besides (aiokafka 0.14): the producer asks the broker for a producer id when it
starts, needs ``acks=all`` (the worker's setting anyway), and retries a batch that failed with a
retriable error until it is acknowledged instead of expiring it after ``request_timeout``: while the
broker is away the worker waits for it; an error that is not retriable still fails the publish and
stops the worker (docs/architecture.md, "No acknowledgement without a checkpoint").
"""

from __future__ import annotations

from typing import Any, Mapping

from faust.transport.drivers import aiokafka as aiokafka_driver

from moodshift.pipeline.worker.checkpoint_consumer import CheckpointConsumer


class IdempotentProducer(aiokafka_driver.Producer):
    """faust's aiokafka producer with ``enable_idempotence`` in every processing guarantee."""

    def _settings_extra(self) -> Mapping[str, Any]:
        # acks=all as idempotence requires it, whatever producer_acks says (faust pairs them likewise).
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class WorkerTransport(aiokafka_driver.Transport):
    """faust's aiokafka transport with :class:`CheckpointConsumer` and :class:`IdempotentProducer`."""

    Consumer = CheckpointConsumer
    Producer = IdempotentProducer
