"""Secrets never show in a ``repr``: of the settings, of client configurations, of faust's credentials."""

from __future__ import annotations

from dataclasses import fields

from moodshift.pipeline.settings import Settings

SECRET = "pa55-word-that-must-not-show"
SECRET_WORDS = ("password", "token", "secret")


def test_every_secret_field_is_left_out_of_repr() -> None:
    secret_fields = [f.name for f in fields(Settings) if any(word in f.name for word in SECRET_WORDS)]
    assert {"sasl_password", "ingest_http_token", "mastodon_token"} <= set(secret_fields)
    settings = Settings(**{name: SECRET for name in secret_fields})
    assert SECRET not in repr(settings) and SECRET not in str(settings)


def test_client_configurations_hide_the_password_from_logs() -> None:
    """kafka-python's admin client logs its whole configuration at DEBUG; dictionaries show reprs."""
    settings = Settings(security_protocol="SASL_SSL", sasl_username="app", sasl_password=SECRET)
    for config in (settings.kafka_python_config(), settings.aiokafka_config()):
        assert config["sasl_plain_password"] == SECRET  # the client still gets the real value
        assert SECRET not in repr(config) and SECRET not in "%s" % (config,)
    assert SECRET not in repr(settings.faust_broker_credentials())
