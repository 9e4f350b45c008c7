"""A pre-flight check of the Kafka security settings, before a long-running process starts.

With wrong credentials or an untrusted CA the clients do not stop: kafka-python retries its bootstrap
for 30 s and then reports only "Unable to bootstrap", aiokafka reports "Unable to bootstrap" and logs
the cause. :func:`check_kafka_access` opens one connection (TLS handshake and SASL authentication,
as configured) and raises :class:`KafkaAccessError` with a message that names the cause and the
setting to fix. What retrying cannot fix fails at once; an unreachable broker does not (it may still
be starting): the clients' own retries handle it. PLAINTEXT has nothing to check.

The message never contains the password.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from moodshift.connectors.settings import ConnectorSettings

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 15.0


class KafkaAccessError(RuntimeError):
    """The broker refused these settings for a reason retrying cannot fix."""


def check_kafka_access(settings: ConnectorSettings, timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
    """Raise :class:`KafkaAccessError` if a bootstrap server rejects the credentials or TLS settings."""
    if settings.security_protocol == "PLAINTEXT":
        return
    loop = asyncio.new_event_loop()  # not the thread's loop: the caller's own loop (faust) stays untouched
    try:
        loop.run_until_complete(_check(settings, timeout))
    finally:
        loop.close()


async def _check(settings: ConnectorSettings, timeout: float) -> None:
    from aiokafka.conn import create_conn

    options = settings.aiokafka_config()
    del options["bootstrap_servers"]
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            connection = await asyncio.wait_for(
                create_conn(host, int(port), request_timeout_ms=int(timeout * 1000), **options), timeout)
        except Exception as error:  # sorted below: fatal, or left to the clients' retries
            fatal = _explain(error, settings, server)
            if fatal:
                raise KafkaAccessError(fatal) from None
            log.warning("pre-flight: could not reach %s (%s); the Kafka clients will keep trying",
                        server, type(error).__name__)
            continue
        connection.close()
        return


def _explain(error: Exception, settings: ConnectorSettings, server: str) -> str | None:
    """The message for an error that retrying cannot fix; None for the others (unreachable, timeout)."""
    from aiokafka.errors import SaslAuthenticationFailed, UnsupportedSaslMechanismError

    if isinstance(error, SaslAuthenticationFailed):
        return (f"authentication failed for user {settings.sasl_username!r} with {settings.sasl_mechanism} "
                f"at {server}: the broker rejected the username or password "
                f"(check sasl_username and sasl_password / MOODSHIFT_SASL_PASSWORD_FILE)")
    if isinstance(error, UnsupportedSaslMechanismError):
        return f"the broker at {server} does not offer SASL mechanism {settings.sasl_mechanism} (check sasl_mechanism)"
    if isinstance(error, ssl.SSLCertVerificationError):
        return (f"TLS: the certificate of {server} is not trusted ({error.verify_message}); "
                f"check ssl_cafile (now {settings.ssl_cafile or 'the system CAs'})")
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake with {server} failed ({error.reason or error}); check security_protocol and ssl_* settings"
    return None
