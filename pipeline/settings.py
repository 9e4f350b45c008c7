"""The worker's settings: the connectors' (Kafka, topics, sources) plus the local broker, the stream
and the model.

Loaded the same way (:meth:`connectors.settings.ConnectorSettings.load`: defaults, then
``MOODSHIFT_<FIELD>`` variables, then command-line overrides), so one environment configures every
process.

>>> s = Settings.load(env={"MOODSHIFT_PARTITIONS": "8"}, overrides={"window_slide_seconds": "30"})
>>> s.partitions, s.window_slide_seconds, s.topic("posts")
(8, 30, 'moodshift.posts')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moodshift.connectors.settings import ConnectorSettings

PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")
STATE_DTYPES = ("float32", "float16")
TABLE_STORES = ("memory", "rocksdb")
CHANGELOG_COMPRESSIONS = ("gzip", "producer")


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "moodshift"


@dataclass(frozen=True)
class Settings(ConnectorSettings):
    """Every knob of moodshift: the connectors' settings, the local broker, the worker, the model.

    Build it with :meth:`load`; construct it directly only in tests.
    """

    # Local broker (`moodshift broker ...`, tests, the demo). cache_dir keeps downloaded artifacts
    # (Kafka jars) so a second run downloads nothing.
    cache_dir: Path = field(default_factory=_default_cache_dir)
    kafka_version: str = "4.4.0"
    broker_port: int = 9092
    controller_port: int = 9093
    broker_heap: str = "512m"
    # >0: also a SASL_SSL listener on this port, with a self-signed CA (<state_dir>/kafka/tls/ca.pem)
    # and the SCRAM user sasl_username/sasl_password; PLAINTEXT on broker_port stays the default.
    broker_sasl_ssl_port: int = 0

    # Pipeline (pipeline/): event-time windows, batching, the worker
    window_size_seconds: int = 600
    window_slide_seconds: int = 60
    allowed_lateness_seconds: int = 120
    batch_max_users: int = 256
    # 200, not 50: four times bigger batches at the rates a worker keeps up with, a fifth less CPU per
    # post; 150 ms more are nothing beside a window's slide and lateness (docs/benchmarks.md, "Paced input").
    batch_max_wait_ms: int = 200
    emit_step_emotions: bool = False
    context_location: str = "default"  # the weather location id whose context every user step gets
    context_symbol: str = "^GSPC"  # the market symbol whose context every user step gets
    idle_close_seconds: int = 0  # >0: close a quiet user's windows after this much wall time
    # The change detector (models/detector.py). None: the value `moodshift train` tuned and wrote to
    # the checkpoint, or the detector's own default (0.5, 0.1, 2) for a checkpoint without one.
    detector_enter_threshold: float | None = None  # a new emotion's probability must reach this ...
    detector_margin: float | None = None  # ... and beat the current emotion's by this much ...
    detector_min_dwell: int | None = None  # ... on this many consecutive window steps
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
    # torch's threads for a worker's model (pipeline/worker/process.py); 0: torch's default, one per
    # core. More than one spin-wait between small batches: they cost CPU, and buy little speed.
    torch_threads: int = 1
    image_backbone: str = "resnet101"
    image_weights: Path | None = None  # a local torchvision weights file; None: torchvision's cache
    allow_random_backbone: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.processing_guarantee not in PROCESSING_GUARANTEES:
            raise ValueError(f"processing_guarantee: {self.processing_guarantee!r} is not one of "
                             f"{PROCESSING_GUARANTEES}")
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads: {self.torch_threads} must be 0 (torch's default) or more")
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
        if self.window_slide_seconds < 1:
            raise ValueError(f"window_slide_seconds: must be at least 1, got {self.window_slide_seconds}")

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
