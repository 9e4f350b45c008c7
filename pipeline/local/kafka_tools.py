"""Apache Kafka's own command-line tools, from the jars the local broker runs on.

An operator's first questions (is the worker group behind? which partitions does it hold? what does
a topic's config say?) have official answers: ``kafka-consumer-groups``, ``kafka-topics``,
``kafka-configs``. The project resolves ``org.apache.kafka:kafka-tools`` from Maven Central with the
broker (``deploy/kafka/pom.xml``), so ``moodshift kafka TOOL ARGS...`` runs them against the
configured cluster, local or not, with the connection settings filled in:

    moodshift kafka consumer-groups --describe --all-groups
    moodshift kafka topics --describe --topic moodshift.posts
    moodshift kafka configs --describe --entity-type topics --entity-name moodshift.emotion-steps

``--bootstrap-server`` is the setting ``bootstrap_servers`` unless given; with SASL or SSL the
settings are written to a client properties file (mode 0600, deleted afterwards) that the tool reads
with ``--command-config`` (``--consumer.config`` for the console consumer).

>>> sorted(TOOLS)[:3]
['configs', 'console-consumer', 'consumer-groups']
>>> tool_command("topics", ["--list"], Settings(bootstrap_servers="127.0.0.1:9092"), None)[-4:]
['org.apache.kafka.tools.TopicCommand', '--bootstrap-server', '127.0.0.1:9092', '--list']
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from moodshift.pipeline.local.broker import DEPLOY_DIR, LocalBroker, require_tool
from moodshift.pipeline.settings import Settings

# tool name (as in Kafka's bin/kafka-NAME.sh) → its main class in kafka-tools 4.x
TOOLS = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "configs": "org.apache.kafka.tools.ConfigCommand",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "transactions": "org.apache.kafka.tools.TransactionsCommand",
}
_CLIENT_CONFIG_FLAG = {"console-consumer": "--consumer.config"}
_LOGIN_MODULES = {"PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
                  "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
                  "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule"}


def client_properties(settings: Settings) -> str | None:
    """The Java client properties for ``settings``' security protocol (None for PLAINTEXT)."""
    if settings.security_protocol == "PLAINTEXT":
        return None
    if settings.ssl_certfile:
        raise ValueError("client certificates (ssl_certfile) are not passed to Kafka's tools: "
                         "give them a --command-config file of your own")
    lines = [f"security.protocol={settings.security_protocol}"]
    if settings.security_protocol.startswith("SASL"):
        password = settings.sasl_password.replace("\\", "\\\\").replace('"', '\\"')
        lines += [f"sasl.mechanism={settings.sasl_mechanism}",
                  f'sasl.jaas.config={_LOGIN_MODULES[settings.sasl_mechanism]} required '
                  f'username="{settings.sasl_username}" password="{password}";']
    if settings.security_protocol.endswith("SSL") and settings.ssl_cafile:
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={settings.ssl_cafile}"]
    return "\n".join(lines) + "\n"


def tool_command(tool: str, args: Sequence[str], settings: Settings, config_file: Path | None) -> list[str]:
    """The java command line that runs ``tool`` with ``args`` (the classpath left to the caller)."""
    if tool not in TOOLS:
        raise ValueError(f"unknown Kafka tool {tool!r}; one of: {', '.join(sorted(TOOLS))}")
    command = [TOOLS[tool]]
    if "--bootstrap-server" not in args:
        command += ["--bootstrap-server", settings.bootstrap_servers]
    if config_file is not None:
        command += [_CLIENT_CONFIG_FLAG.get(tool, "--command-config"), str(config_file)]
    return command + list(args)


def run_tool(tool: str, args: Sequence[str], settings: Settings) -> int:
    """Run a Kafka tool in the foreground; its exit code (the jars are resolved first if needed)."""
    broker = LocalBroker(settings)
    broker.resolve_artifacts()
    java = require_tool("java", "Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)")
    properties = client_properties(settings)
    with tempfile.TemporaryDirectory(prefix="moodshift-kafka-tool-") as folder:
        config_file = None
        if properties is not None:
            config_file = Path(folder) / "client.properties"
            config_file.touch(mode=0o600)
            config_file.write_text(properties)
        command = [java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", broker.classpath(),
                   f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'tools-log4j2.properties'}",
                   *tool_command(tool, args, settings, config_file)]
        return subprocess.run(command).returncode
