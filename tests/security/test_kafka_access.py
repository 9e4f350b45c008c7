"""The pre-flight check names what is wrong with the security settings, in under a second each.

(The HTTP ingest endpoint's bearer token (401) and body limit (413) are tested with the endpoint:
``tests/connectors/test_ingest.py::test_http_ingest_answers_per_item_and_guards_the_door``.)
"""

from __future__ import annotations

import time

import pytest

from moodshift.connectors.kafka_access import KafkaAccessError, check_kafka_access
from moodshift.pipeline.local.net import free_port
from moodshift.pipeline.settings import Settings

pytestmark = pytest.mark.kafka


def test_right_credentials_pass(secure_settings: Settings) -> None:
    check_kafka_access(secure_settings)


@pytest.mark.parametrize("change, message", [
    ({"sasl_password": "wrong"}, "authentication failed for user '{user}' with SCRAM-SHA-512 at {server}: "),
    ({"sasl_username": "mallory"}, "authentication failed for user 'mallory' with SCRAM-SHA-512 at {server}: "),
    ({"sasl_mechanism": "SCRAM-SHA-256"}, "does not offer SASL mechanism SCRAM-SHA-256 (check sasl_mechanism)"),
    ({"ssl_cafile": ""}, "is not trusted (self-signed certificate in certificate chain); check ssl_cafile"),
], ids=["wrong password", "unknown user", "mechanism not offered", "CA not trusted"])
def test_what_retrying_cannot_fix_fails_at_once(secure_settings: Settings, change: dict, message: str) -> None:
    settings = secure_settings.replace(**change)
    started = time.monotonic()
    with pytest.raises(KafkaAccessError) as raised:
        check_kafka_access(settings)
    assert message.format(user=settings.sasl_username, server=settings.bootstrap_servers) in str(raised.value)
    assert time.monotonic() - started < 5
    assert settings.sasl_password not in str(raised.value)


def test_an_unreachable_server_is_left_to_the_clients(secure_settings: Settings) -> None:
    """A broker that is not up yet may come; the next reachable server is checked."""
    down = f"127.0.0.1:{free_port()}"
    check_kafka_access(secure_settings.replace(bootstrap_servers=f"{down},{secure_settings.bootstrap_servers}"))
    check_kafka_access(secure_settings.replace(bootstrap_servers=down))


def test_plaintext_has_nothing_to_check() -> None:
    check_kafka_access(Settings(bootstrap_servers=f"127.0.0.1:{free_port()}"))
