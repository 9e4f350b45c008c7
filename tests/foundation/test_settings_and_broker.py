"""Settings loading and the local broker's lifecycle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moodshift.pipeline.local.broker import LocalBroker, new_cluster_id
from moodshift.pipeline.local.net import free_port
from moodshift.pipeline.settings import Settings


def test_environment_then_overrides() -> None:
    env = {"MOODSHIFT_BOOTSTRAP_SERVERS": "a:1,b:2", "MOODSHIFT_PARTITIONS": "12", "HOME": "/x"}
    settings = Settings.load(env=env, overrides={"partitions": 3})
    assert settings.kafka_python_config()["bootstrap_servers"] == ["a:1", "b:2"]
    assert settings.partitions == 3


def test_an_optional_number_is_a_number_or_none() -> None:
    assert Settings.load(env={"MOODSHIFT_DETECTOR_MIN_DWELL": "2"}).detector_min_dwell == 2
    assert Settings.load(env={"MOODSHIFT_DETECTOR_MARGIN": "0.25"}).detector_margin == 0.25
    assert Settings.load(env={"MOODSHIFT_DETECTOR_MARGIN": ""}).detector_margin is None
    assert Settings.load(env={}).detector_enter_threshold is None
    with pytest.raises(ValueError, match="detector_min_dwell"):
        Settings.load(env={"MOODSHIFT_DETECTOR_MIN_DWELL": "two"})


def test_bad_values_name_the_setting() -> None:
    with pytest.raises(ValueError, match="partitions"):
        Settings.load(env={"MOODSHIFT_PARTITIONS": "many"})
    with pytest.raises(ValueError, match="security_protocol"):
        Settings.load(env={"MOODSHIFT_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(ValueError, match="unknown settings"):
        Settings.load(overrides={"partitons": 3})


def test_sasl_ssl_reaches_kafka_python_and_secret_comes_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    settings = Settings.load(env={
        "MOODSHIFT_SECURITY_PROTOCOL": "SASL_SSL", "MOODSHIFT_SASL_USERNAME": "app",
        "MOODSHIFT_SASL_PASSWORD_FILE": str(secret),
    })
    config = settings.kafka_python_config()
    assert config["sasl_plain_password"] == "s3cret"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "s3cret" not in repr(settings)
    credentials = settings.faust_broker_credentials()
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.ssl_context is not None


def test_cluster_id_is_urlsafe_16_bytes() -> None:
    import base64

    cluster_id = new_cluster_id()
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16 and "=" not in cluster_id


@pytest.mark.kafka
def test_broker_cli_start_stop_twice_leaves_no_process(kafka_cluster: Settings, tmp_path: Path) -> None:
    """start twice (idempotent), status, stop twice: one broker process, then none."""
    env = dict(os.environ, MOODSHIFT_STATE_DIR=str(tmp_path), MOODSHIFT_BROKER_PORT=str(free_port()),
               MOODSHIFT_CONTROLLER_PORT=str(free_port()))
    env.pop("MOODSHIFT_BOOTSTRAP_SERVERS", None)

    def moodshift(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "moodshift.pipeline.cli", "broker", *args],
                              env=env, capture_output=True, text=True, timeout=180)

    first, second = moodshift("start"), moodshift("start")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0 and second.stdout == first.stdout  # the same bootstrap address
    broker = LocalBroker(Settings.load(env=env))
    pid = broker.running_pid()
    assert pid is not None
    assert moodshift("status").returncode == 0
    assert moodshift("stop").stdout.strip() == "stopped"
    assert moodshift("stop").stdout.strip() == "not running"
    assert moodshift("status").returncode == 3
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]


def test_an_unreadable_secret_file_names_the_setting_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=f"sasl_password: cannot read MOODSHIFT_SASL_PASSWORD_FILE={missing} "):
        Settings.load(env={"MOODSHIFT_SASL_PASSWORD_FILE": str(missing)})


def test_cluster_ids_never_look_like_an_option() -> None:
    """The storage tool's parser would take a leading "-" for an option (seen: a flaky broker start)."""
    assert not any(new_cluster_id().startswith("-") for _ in range(2_000))
