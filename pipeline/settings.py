"""One settings object for every moodshift process.

Each field has a default, may be set by an environment variable ``MOODSHIFT_<FIELD>`` (upper case),
and a command-line override wins over both. Nothing else in moodshift reads the environment.

Secrets (``sasl_password``) may instead come from a file named by ``MOODSHIFT_SASL_PASSWORD_FILE``
(how Kubernetes and compose mount secrets); they never appear in ``repr`` or logs.

>>> s = Settings.load(env={"MOODSHIFT_PARTITIONS": "8"}, overrides={"topic_prefix": "t."})
>>> s.partitions, s.topic("posts")
(8, 't.posts')
>>> "secret" in repr(Settings.load(env={"MOODSHIFT_SASL_PASSWORD": "secret"}))
False
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "MOODSHIFT_"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")
STATE_DTYPES = ("float32", "float16")
TABLE_STORES = ("memory", "rocksdb")
CHANGELOG_COMPRESSIONS = ("gzip", "producer")


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


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "moodshift"


@dataclass(frozen=True)
class Settings:
    """Every knob of moodshift: Kafka connection, topics, local broker, paths.

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

    # Local broker (`moodshift broker ...`, tests, the demo). state_dir keeps data between runs;
    # cache_dir keeps downloaded artifacts (Kafka jars) so a second run downloads nothing.
    state_dir: Path = field(default_factory=_default_state_dir)
    cache_dir: Path = field(default_factory=_default_cache_dir)
    kafka_version: str = "4.4.0"
    broker_port: int = 9092
    controller_port: int = 9093
    broker_heap: str = "512m"
    # >0: also a SASL_SSL listener on this port, with a self-signed CA (<state_dir>/kafka/tls/ca.pem)
    # and the SCRAM user sasl_username/sasl_password; PLAINTEXT on broker_port stays the default.
    broker_sasl_ssl_port: int = 0

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

    # Pipeline (pipeline/): event-time windows, batching, the worker
    window_size_seconds: int = 600
    window_slide_seconds: int = 60
    allowed_lateness_seconds: int = 120
    batch_max_users: int = 256
    batch_max_wait_ms: int = 50
    emit_step_emotions: bool = False
    context_location: str = "default"  # the weather location id whose context every user step gets
    context_symbol: str = "^GSPC"  # the market symbol whose context every user step gets
    idle_close_seconds: int = 0  # >0: close a quiet user's windows after this much wall time
    detector_enter_threshold: float = 0.5  # a new emotion's probability must reach this ...
    detector_margin: float = 0.1  # ... and beat the current emotion's by this much ...
    detector_min_dwell: int = 3  # ... on this many consecutive window steps
    worker_web_port: int = 6066
    worker_session_timeout_seconds: float = 30.0  # a crashed worker's partitions move after this long
    # Users' records reach the changelog, and input offsets are committed, at most this often
    # (docs/architecture.md, "State and checkpoints").
    checkpoint_interval_seconds: float = 10.0
    # at_least_once: outputs may repeat after a crash (same ids). exactly_once: faust's Kafka
    # transactions also fence the changelog against a worker that lost its partitions (README).
    processing_guarantee: str = "at_least_once"
    # How users' LSTM state is stored between steps: float16 halves a record (docs/model/report.md
    # measures what it changes in the outputs).
    state_dtype: str = "float32"
    # Where a worker keeps users' records: memory (re-read from the changelog at every start) or
    # rocksdb (a local RocksDB per partition under state_dir; a restart reads only the changelog's
    # tail). docs/benchmarks.md, "Restart time", measures both.
    table_store: str = "memory"
    # The users changelog's compression.type, set when the worker creates the topic: gzip, or
    # producer (as sent, uncompressed). gzip needs nothing beyond Python to read back.
    changelog_compression: str = "gzip"

    # Model (models/): checkpoint and inference device
    model_checkpoint: Path | None = None  # None: <state_dir>/models/moodshift.pt
    device: str = "auto"  # auto: CUDA when present, else CPU
    image_backbone: str = "resnet101"
    image_weights: Path | None = None  # a local torchvision weights file; None: torchvision's cache
    allow_random_backbone: bool = False

    def __post_init__(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(
                f"security_protocol: {self.security_protocol!r} is not one of {SECURITY_PROTOCOLS}"
            )
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(f"sasl_mechanism: {self.sasl_mechanism!r} is not one of {SASL_MECHANISMS}")
        if self.processing_guarantee not in PROCESSING_GUARANTEES:
            raise ValueError(f"processing_guarantee: {self.processing_guarantee!r} is not one of "
                             f"{PROCESSING_GUARANTEES}")
        if self.state_dtype not in STATE_DTYPES:
            raise ValueError(f"state_dtype: {self.state_dtype!r} is not one of {STATE_DTYPES}")
        if self.table_store not in TABLE_STORES:
            raise ValueError(f"table_store: {self.table_store!r} is not one of {TABLE_STORES}")
        if self.table_store == "rocksdb" and self.processing_guarantee == "exactly_once":
            # A local store keeps what a worker wrote, also in transactions that were then aborted
            # (a fenced worker's), and a restart would start from those records.
            raise ValueError("table_store: rocksdb works with processing_guarantee=at_least_once only")
        if self.changelog_compression not in CHANGELOG_COMPRESSIONS:
            raise ValueError(f"changelog_compression: {self.changelog_compression!r} is not one of "
                             f"{CHANGELOG_COMPRESSIONS}")
        if self.checkpoint_interval_seconds <= 0:
            raise ValueError(f"checkpoint_interval_seconds: must be positive, got {self.checkpoint_interval_seconds}")
        if self.window_size_seconds % self.window_slide_seconds:
            raise ValueError("window_size_seconds: must be a multiple of window_slide_seconds")
        for name in ("partitions", "replication_factor", "retention_hours", "window_slide_seconds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> "Settings":
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

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def replace_text(self, texts: Mapping[str, str]) -> "Settings":
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

    def faust_broker_credentials(self) -> Any:
        """The ``broker_credentials`` value for ``faust.App`` (None for PLAINTEXT)."""
        import faust

        if self.security_protocol == "PLAINTEXT":
            return None
        if self.security_protocol == "SSL":
            return faust.SSLCredentials(self.ssl_context())
        return faust.SASLCredentials(
            username=self.sasl_username,
            password=self.sasl_password,
            mechanism=self.sasl_mechanism,
            ssl_context=self.ssl_context(),
        )

    def faust_broker_url(self) -> str:
        return ";".join(f"kafka://{server}" for server in self.bootstrap_servers.split(","))


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
