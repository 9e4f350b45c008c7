"""A real single-node Apache Kafka broker (KRaft, combined mode) on 127.0.0.1.

The official broker artifacts come from Maven Central: ``deploy/kafka/pom.xml`` pins
``org.apache.kafka:kafka_2.13``, ``kafka-tools`` (the command-line tools, :mod:`pipeline.local.kafka_tools`)
and a log4j2 SLF4J binding, and Maven copies them into ``<cache_dir>/kafka-<version>/libs-<POM hash>``
once. Storage is formatted once under
``<state_dir>/kafka``; a restart keeps the data. The process started is remembered in a pid file,
and :func:`stop` ends only that process.

Clients use the PLAINTEXT listener on ``broker_port``. With ``broker_sasl_ssl_port`` set, a second
listener speaks SASL_SSL: TLS with a certificate from a throwaway CA (:mod:`pipeline.local.tls`;
clients trust ``<state_dir>/kafka/tls/ca.pem``) and SCRAM authentication of the user
``sasl_username`` with ``sasl_password``. That user is created when the storage is formatted or, on a
state folder formatted earlier, through the admin API at every start (which also applies a changed
password). The password never reaches a command line or a file: only its salted SCRAM form does.

>>> broker = LocalBroker(Settings(state_dir=Path("/tmp/x"), broker_sasl_ssl_port=9094))
>>> broker.pid_file, broker.sasl_ssl_bootstrap
(PosixPath('/tmp/x/kafka/broker.pid'), '127.0.0.1:9094')
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from moodshift.pipeline.local.tls import BrokerTlsFiles, write_broker_tls
from moodshift.pipeline.local.net import answers
from moodshift.pipeline.settings import Settings

if TYPE_CHECKING:
    from kafka.admin import UserScramCredentialUpsertion

log = logging.getLogger(__name__)

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
SCRAM_ITERATIONS = 8192
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
SCRAM_USERNAME = re.compile(r"[A-Za-z0-9._@-]+")  # nothing the storage tool's [name=...] syntax would split


class BrokerError(RuntimeError):
    """The local broker could not be set up, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class LocalBroker:
    """Runs and stops the local broker described by ``settings``.

    ``start`` is idempotent: a broker already running from this state folder is reused.
    """

    settings: Settings
    # One node of a cluster (pipeline.local.cluster): its id, every controller ("1@host:port,..."),
    # the id all nodes are formatted with, and the replication of Kafka's internal topics (with
    # min.insync.replicas 2 from 3 on). The defaults make the single node.
    node_id: int = 1
    voters: str = ""
    cluster_id: str = ""
    replication: int = 1

    @property
    def home(self) -> Path:
        return self.settings.state_dir / "kafka"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def libs_dir(self) -> Path:
        """The resolved jars; named after the POM's contents, so that a changed POM resolves anew."""
        return self.settings.cache_dir / f"kafka-{self.settings.kafka_version}" / f"libs-{_pom_digest()}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.settings.broker_port}"

    @property
    def sasl_ssl_bootstrap(self) -> str | None:
        """The SASL_SSL listener's address, or None when ``broker_sasl_ssl_port`` is 0 (off)."""
        port = self.settings.broker_sasl_ssl_port
        return f"127.0.0.1:{port}" if port else None

    @property
    def tls(self) -> BrokerTlsFiles:
        """The CA certificate clients trust (``tls.ca_file``) and the broker's PEM key store."""
        return BrokerTlsFiles(self.home / "tls")

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 90.0, wait: bool = True) -> str:
        """Start the broker unless it runs already; return the bootstrap address once it answers
        (``wait=False``: once launched; a node of a cluster answers only when a quorum runs)."""
        self.check_sasl_settings()
        pid = self.running_pid()
        if pid is not None:
            self.wait_ready(timeout)
            self.upsert_scram_user()
            return self.bootstrap
        java = require_tool("java", "Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)")
        self.resolve_artifacts()
        self.home.mkdir(parents=True, exist_ok=True)
        if self.sasl_ssl_bootstrap:
            write_broker_tls(self.tls.folder)
        self.write_properties()
        formatted_now = not (self.home / "data" / "meta.properties").exists()
        if formatted_now:
            self.format_storage(java)
        with open(self.log_file, "ab") as out:
            process = subprocess.Popen(
                [java, *self.jvm_options(), "-cp", self.classpath(), BROKER_MAIN, str(self.properties_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI; stop() ends it by pid
            )
        self.pid_file.write_text(str(process.pid))
        if not wait:
            return self.bootstrap
        try:
            self.wait_ready(timeout, process)
            if not formatted_now:
                self.upsert_scram_user()
        except BrokerError:
            self.stop()
            raise
        return self.bootstrap

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the broker this state folder started; True when one was running."""
        pid = self.running_pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            log.warning("broker pid %d ignored SIGTERM for %.0f s; killing it", pid, timeout)
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)
        return True

    def running_pid(self) -> int | None:
        """The pid from the pid file, if that process is alive and is our broker."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        ours = BROKER_MAIN.encode() in cmdline and str(self.properties_file).encode() in cmdline
        return pid if ours and _alive(pid) else None

    def wait_ready(self, timeout: float, process: subprocess.Popen | None = None) -> None:
        """Block until the broker answers a metadata request over the Kafka protocol."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout
        while True:
            if process is not None and process.poll() is not None:
                raise BrokerError(f"broker exited with {process.returncode}:\n{self.log_tail()}")
            try:
                if not answers(self.bootstrap, timeout=1):
                    raise OSError(f"nothing listens on {self.bootstrap} yet")
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=3000
                )
                try:
                    admin.describe_cluster()
                    return
                finally:
                    admin.close()
            except (KafkaError, OSError) as error:
                if time.monotonic() > deadline:
                    raise BrokerError(f"broker not ready after {timeout:.0f} s ({error}):\n{self.log_tail()}")
            time.sleep(0.5)

    # -- setup -----------------------------------------------------------------------------------

    def resolve_artifacts(self) -> None:
        """Copy the broker and tools jars from Maven Central into the cache folder (once per version and POM)."""
        if self.libs_dir.is_dir() and any(self.libs_dir.glob("kafka_2.13-*.jar")):
            return
        mvn = require_tool("mvn", "Apache Maven 3 (Debian: apt-get install maven)")
        # A folder of this process's own: two processes resolving at once must not copy into one.
        partial = self.libs_dir.with_name(f"{self.libs_dir.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        command = [
            mvn, "-q", "-B", "-f", str(DEPLOY_DIR / "pom.xml"), "dependency:copy-dependencies",
            f"-Dkafka.version={self.settings.kafka_version}", f"-DoutputDirectory={partial}",
        ]
        print(f"resolving Apache Kafka {self.settings.kafka_version} from Maven Central ...", file=sys.stderr)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"Maven could not resolve the Kafka artifacts:\n{result.stdout}{result.stderr}")
        try:
            partial.rename(self.libs_dir)  # atomic: a half-copied folder is never mistaken for a cache
        except OSError:  # another process renamed its copy first: the same jars
            if not self.libs_dir.is_dir():
                raise
            shutil.rmtree(partial, ignore_errors=True)

    def write_properties(self) -> None:
        port, controller = self.settings.broker_port, self.settings.controller_port
        min_isr = min(2, self.replication)
        listeners = [f"PLAINTEXT://127.0.0.1:{port}"]
        if self.sasl_ssl_bootstrap:
            listeners.append(f"SASL_SSL://{self.sasl_ssl_bootstrap}")
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            # Static voters: the ports live in this file, not in the formatted storage.
            "controller.quorum.voters": self.voters or f"{self.node_id}@127.0.0.1:{controller}",
            "listeners": ",".join([*listeners, f"CONTROLLER://127.0.0.1:{controller}"]),
            "advertised.listeners": ",".join(listeners),
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
            "log.dirs": str(self.home / "data"),
            "num.partitions": str(self.settings.partitions),
            "default.replication.factor": str(self.replication),
            "min.insync.replicas": str(min_isr),
            "offsets.topic.replication.factor": str(self.replication),
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": str(self.replication),
            "transaction.state.log.min.isr": str(min_isr),
            "share.coordinator.state.topic.replication.factor": str(self.replication),
            "share.coordinator.state.topic.min.isr": str(min_isr),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            # A cluster's node skips controlled shutdown: its controller must commit a record, and once
            # the other nodes are gone (killed, or stopped a moment before) no quorum can: a 5-minute wait.
            **({"controlled.shutdown.enable": "false"} if self.voters else {}),
            **self.sasl_ssl_properties(),
        }
        self.properties_file.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))

    def sasl_ssl_properties(self) -> dict[str, str]:
        """The SASL_SSL listener's settings: SCRAM only, TLS from the PEM key store (none when off).

        Inter-broker and controller traffic stay on the PLAINTEXT loopback listeners, so the JAAS
        entry holds no credentials: the broker only checks clients against the stored SCRAM users.
        """
        if not self.sasl_ssl_bootstrap:
            return {}
        mechanism = self.settings.sasl_mechanism
        prefix = "listener.name.sasl_ssl."
        return {
            f"{prefix}sasl.enabled.mechanisms": mechanism,
            f"{prefix}{mechanism.lower()}.sasl.jaas.config": f"{SCRAM_LOGIN_MODULE} required;",
            f"{prefix}ssl.keystore.type": "PEM",
            f"{prefix}ssl.keystore.location": str(self.tls.keystore_file),
        }

    def check_sasl_settings(self) -> None:
        """Fail early when the SASL_SSL listener is on but its SCRAM user cannot be made."""
        if not self.sasl_ssl_bootstrap:
            return
        settings = self.settings
        if not settings.sasl_mechanism.startswith("SCRAM-"):
            raise BrokerError(f"the local broker's SASL_SSL listener supports SCRAM-SHA-256 and SCRAM-SHA-512, "
                              f"not sasl_mechanism={settings.sasl_mechanism}")
        if not SCRAM_USERNAME.fullmatch(settings.sasl_username) or not settings.sasl_password:
            raise BrokerError("broker_sasl_ssl_port needs the SCRAM user to create: set sasl_username (letters, "
                              "digits, . _ @ -) and sasl_password (or MOODSHIFT_SASL_PASSWORD_FILE)")

    def scram_credential(self) -> UserScramCredentialUpsertion:
        """The settings' SCRAM user, salted: the same object serves the formatter and the admin API."""
        from kafka.admin import UserScramCredentialUpsertion

        return UserScramCredentialUpsertion(self.settings.sasl_username, self.settings.sasl_mechanism,
                                            self.settings.sasl_password, iterations=SCRAM_ITERATIONS)

    def scram_format_arguments(self) -> list[str]:
        """``--add-scram`` for the storage formatter, with the salted password (never the password)."""
        if not self.sasl_ssl_bootstrap:
            return []
        credential = self.scram_credential()
        salt, salted = (base64.b64encode(raw).decode() for raw in (credential.salt, credential.salted_password))
        return ["--add-scram", f"{self.settings.sasl_mechanism}=[name={credential.user},salt={salt},"
                f"saltedpassword={salted},iterations={credential.iterations}]"]

    def upsert_scram_user(self) -> None:
        """Create or update the SCRAM user over the PLAINTEXT listener (a folder formatted earlier)."""
        if not self.sasl_ssl_bootstrap:
            return
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        try:
            errors = admin.alter_user_scram_credentials([self.scram_credential()])
        finally:
            admin.close()
        error = errors.get(self.settings.sasl_username)
        if error:
            raise BrokerError(f"could not create the SCRAM user {self.settings.sasl_username!r}: {error}")

    def format_storage(self, java: str) -> None:
        command = [
            java, *self.jvm_options(), "-cp", self.classpath(), STORAGE_TOOL_MAIN, "format",
            "-t", self.cluster_id or new_cluster_id(), "-c", str(self.properties_file),
            *self.scram_format_arguments(),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed (exit {result.returncode}):\n"
                              f"{result.stdout}{result.stderr}")

    def jvm_options(self) -> list[str]:
        return [
            f"-Xmx{self.settings.broker_heap}", f"-Xms{self.settings.broker_heap}",
            "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",  # quicker start-up; fine for a dev broker
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
        ]

    def classpath(self) -> str:
        return os.pathsep.join(str(jar) for jar in sorted(self.libs_dir.glob("*.jar")))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no broker log)"


def new_cluster_id() -> str:
    """A KRaft cluster id: URL-safe base64 of 16 random bytes without padding.

    Never one that starts with "-" (1 in 64 would): the storage tool would read it as an option and
    fail with "--cluster-id/-t: expected one argument". Kafka's own Uuid.randomUuid skips those too.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


@functools.lru_cache(maxsize=1)
def _pom_digest() -> str:
    return hashlib.sha256((DEPLOY_DIR / "pom.xml").read_bytes()).hexdigest()[:12]


def require_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerError(f"`{name}` was not found on PATH: install {what}")
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (our own exited child not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        except ChildProcessError:
            pass
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False
