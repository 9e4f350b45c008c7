"""The local broker's SASL_SSL listener: added to a folder formatted without it (``moodshift broker
start``), a changed password, and no start without a user to create. (A fresh folder: the session's
broker in tests/conftest.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moodshift.connectors.kafka_access import KafkaAccessError, check_kafka_access
from moodshift.pipeline.local.broker import BrokerError, LocalBroker
from moodshift.pipeline.local.net import free_port
from moodshift.pipeline.settings import Settings


def broker_cli(env: dict[str, str], action: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moodshift.pipeline.cli", "broker", action],
                          env=env, capture_output=True, text=True, timeout=180)


def test_sasl_ssl_listener_needs_a_user_to_create(tmp_path: Path) -> None:
    broker = LocalBroker(Settings(state_dir=tmp_path, broker_sasl_ssl_port=free_port(), sasl_username="app"))
    with pytest.raises(BrokerError, match="broker_sasl_ssl_port needs the SCRAM user to create"):
        broker.start()
    assert not broker.home.exists()  # refused before anything was written or started


@pytest.mark.kafka
def test_listener_added_to_a_formatted_folder_and_password_changed(kafka_cluster: Settings, tmp_path: Path) -> None:
    """kafka_cluster: run after the session broker is up, not beside its start (2 cores)."""
    secret = tmp_path / "kafka-password"
    secret.write_text("first-password\n")
    plain = Settings(state_dir=tmp_path / "state", broker_port=free_port(), controller_port=free_port())
    secured = plain.replace(broker_sasl_ssl_port=free_port(), sasl_username="app", sasl_password="first-password")
    broker = LocalBroker(secured)
    client = Settings(bootstrap_servers=broker.sasl_ssl_bootstrap, security_protocol="SASL_SSL",
                      sasl_username="app", ssl_cafile=str(broker.tls.ca_file))
    env = dict(os.environ, MOODSHIFT_STATE_DIR=str(secured.state_dir), MOODSHIFT_BROKER_PORT=str(secured.broker_port),
               MOODSHIFT_CONTROLLER_PORT=str(secured.controller_port),
               MOODSHIFT_BROKER_SASL_SSL_PORT=str(secured.broker_sasl_ssl_port),
               MOODSHIFT_SASL_USERNAME="app", MOODSHIFT_SASL_PASSWORD_FILE=str(secret))
    env.pop("MOODSHIFT_SASL_PASSWORD", None)
    try:
        LocalBroker(plain).start()  # formats the folder without the SCRAM user
        assert LocalBroker(plain).stop()

        started = broker_cli(env, "start")  # restarts on the formatted folder: the user comes via the admin API
        assert started.returncode == 0, started.stderr
        assert started.stdout.splitlines() == [
            broker.bootstrap, f"sasl_ssl={broker.sasl_ssl_bootstrap} ssl_cafile={broker.tls.ca_file} sasl_username=app"]
        check_kafka_access(client.replace(sasl_password="first-password"))

        LocalBroker(secured.replace(sasl_password="second-password")).start()  # running already: the password changes
        check_kafka_access(client.replace(sasl_password="second-password"))
        with pytest.raises(KafkaAccessError, match="authentication failed for user 'app'"):
            check_kafka_access(client.replace(sasl_password="first-password"))
    finally:
        broker.stop()
