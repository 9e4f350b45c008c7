"""The settings connectors need: the Kafka connection, topics, sources, validation, safe fetching.

Each field has a default, may be set by an environment variable ``MOODSHIFT_<FIELD>`` (upper case),
and a command-line override wins over both. Nothing else in moodshift reads the environment. The
worker's settings (:class:`pipeline.settings.Settings`) extend these, so one environment configures
every process and a connector never imports the worker's package.

Secrets (``sasl_password``) may instead come from a file named by ``MOODSHIFT_SASL_PASSWORD_FILE``
(how Kubernetes and compose mount secrets); they never appear in ``repr`` or logs.

>>> s = ConnectorSettings.load(env={"MOODSHIFT_PARTITIONS": "8"}, overrides={"topic_prefix": "t."})
>>> s.partitions, s.topic("posts")
(8, 't.posts')
>>> "secret" in repr(ConnectorSettings.load(env={"MOODSHIFT_SASL_PASSWORD": "secret"}))
False
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, TypeVar

ENV_PREFIX = "MOODSHIFT_"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

SettingsT = TypeVar("SettingsT", bound="ConnectorSettings")


class HiddenText(str):
    """A secret string whose ``repr`` hides it; everything else (``str``, ``encode``) sees the value.

    Client configuration dictionaries end up in DEBUG logs (kafka-python's admin client logs its whole
    configuration), and a dictionary shows its values by ``repr``.

    >>> config = {"sasl_plain_password": HiddenText("s3cret")}
    >>> config, config["sasl_plain_password"] == "s3cret"
    ({'sasl_plain_password': '***'}, True)
    """

    def __repr__(self) -> str:
        return "'***'"


def _default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "moodshift"


@dataclass(frozen=True)
class ConnectorSettings:
    """Every knob a connector reads: Kafka connection, topics, sources, paths.

    Build it with :meth:`load`; construct it directly only in tests.
    """

    # Kafka connection
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""

    # Topics
    topic_prefix: str = "moodshift."
    partitions: int = 4
    replication_factor: int = 1
    retention_hours: int = 168

    # Where moodshift keeps data between runs (the media store, the local broker's logs, checkpoints)
    state_dir: Path = field(default_factory=_default_state_dir)

    # Connectors (connectors/): sources, validation, media store, safe fetching
    media_dir: Path | None = None  # None: <state_dir>/media
    max_message_bytes: int = 1_000_000  # key + value; larger records become `oversized` dead letters
    max_text_chars: int = 5_000
    max_clock_skew_seconds: int = 300  # event times further in the future are rejected
    producer_compression: str = "gzip"  # gzip needs no native library; snappy/lz4/zstd do
    producer_delivery_timeout_ms: int = 60_000  # kafka-python retries within this, then fails
    fetch_allowed_hosts: str = ""  # comma-separated; "example.com" or "*.example.com"; empty: any
    fetch_allow_private: bool = False  # private and loopback addresses (tests, LAN); never link-local
    fetch_max_bytes: int = 50_000_000
    fetch_timeout_seconds: float = 10.0
    fetch_max_redirects: int = 3
    video_frames_per_second: float = 1.0
    video_max_frames: int = 64
    video_max_seconds: float = 120.0
    audio_sample_rate: int = 16_000
    ingest_http_host: str = "127.0.0.1"
    ingest_http_port: int = 8088
    ingest_http_token: str = field(default="", repr=False)  # empty: no bearer token required
    ingest_http_max_body_bytes: int = 1_048_576
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    circuit_failure_threshold: int = 5  # failed polls in a row that open a source's circuit ...
    circuit_cooldown_seconds: float = 60.0  # ... for this long; then one trial poll
    open_meteo_url: str = "https://api.open-meteo.com"
    weather_locations: str = ""  # comma-separated id:latitude:longitude, e.g. "berlin:52.52:13.41"
    weather_interval_seconds: float = 900.0
    yahoo_url: str = ""  # empty: yfinance's own Yahoo endpoints; else every Yahoo request goes here
    market_symbols: str = "^GSPC"  # comma-separated
    market_interval_seconds: float = 60.0
    market_intraday_interval: str = "1m"
    mastodon_url: str = ""  # e.g. https://mastodon.social
    mastodon_token: str = field(default="", repr=False)
    mastodon_stream: str = "public"  # public | public:local | hashtag:<tag>

    def __post_init__(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(
                f"security_protocol: {self.security_protocol!r} is not one of {SECURITY_PROTOCOLS}"
            )
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(f"sasl_mechanism: {self.sasl_mechanism!r} is not one of {SASL_MECHANISMS}")
        for name in ("partitions", "replication_factor", "retention_hours"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(
        cls: type[SettingsT], env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> SettingsT:
        """Defaults, then ``MOODSHIFT_*`` variables from ``env`` (``os.environ``), then overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                values[f.name] = env[key]
            elif f"{key}_FILE" in env:
                values[f.name] = _read_secret_file(f.name, f"{key}_FILE", env[f"{key}_FILE"])
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        return cls(**{name: _coerce(cls, name, raw) for name, raw in values.items()})

    def replace(self: SettingsT, **changes: Any) -> SettingsT:
        return dataclasses.replace(self, **changes)

    def replace_text(self: SettingsT, texts: Mapping[str, str]) -> SettingsT:
        """``replace`` with values written as text (``--set FIELD=VALUE``), converted as ``load`` does."""
        unknown = set(texts) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        return self.replace(**{name: _coerce(type(self), name, raw) for name, raw in texts.items()})

    # -- derived values --------------------------------------------------------------------------

    def topic(self, name: str) -> str:
        """The full Kafka topic name for a logical topic (``posts`` → ``moodshift.posts``)."""
        return self.topic_prefix + name

    def kafka_python_config(self) -> dict[str, Any]:
        """Connection keyword arguments for kafka-python's producer, consumer and admin client."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            config.update(
                ssl_cafile=self.ssl_cafile or None,
                ssl_certfile=self.ssl_certfile or None,
                ssl_keyfile=self.ssl_keyfile or None,
                ssl_check_hostname=True,
            )
        return config | self._sasl_config()

    def aiokafka_config(self) -> dict[str, Any]:
        """Connection keyword arguments for aiokafka's producer and consumer."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "ssl_context": self.ssl_context(),
        }
        return config | self._sasl_config()

    def _sasl_config(self) -> dict[str, Any]:
        """The SASL keyword arguments, spelled the same by kafka-python and aiokafka."""
        if not self.security_protocol.startswith("SASL"):
            return {}
        return {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": HiddenText(self.sasl_password),
        }

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile or None)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile or None)
        return context


def _read_secret_file(name: str, variable: str, path: str) -> str:
    """The value of ``name`` from the file ``variable`` names, without its trailing newline."""
    try:
        return Path(path).read_text().strip()
    except OSError as error:
        raise ValueError(f"{name}: cannot read {variable}={path} ({error.strerror})") from None


def _coerce(cls: type, name: str, raw: Any) -> Any:
    kind = {f.name: f for f in fields(cls)}[name].type
    if not isinstance(raw, str):
        return raw
    if kind in ("int | None", "float | None"):
        if raw.strip().lower() in ("", "none"):
            return None
        kind = kind.removesuffix(" | None")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if kind in ("Path", "Path | None"):
            return Path(raw).expanduser()
    except ValueError:
        raise ValueError(f"{name}: cannot read {raw!r} as {kind}") from None
    return raw
