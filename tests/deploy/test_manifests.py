"""deploy/compose.yaml, deploy/k8s/ and deploy/Dockerfile: they parse, the Kubernetes objects match
the Kubernetes schema (kubernetes-validate, offline), and they agree with the code: only real
settings, secrets only through files, probes on the worker's /health port, a GPU for the inference
worker, replicas within the partition count, references that resolve, commands the CLI accepts, and
scrape targets that prometheus.yml discovers."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import pytest
import yaml

from moodshift.pipeline.cli import build_parser
from moodshift.connectors.settings import ENV_PREFIX
from moodshift.pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
PROMETHEUS_K8S_CONFIG = DEPLOY / "prometheus" / "prometheus-k8s.yml"

# The oldest Kubernetes minor we claim to support, and the newest schema kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", None)
NAMESPACE = "moodshift"
IMAGE = "moodshift"  # the image deploy/Dockerfile builds; its entrypoint is `moodshift`
WORKER = "moodshift-worker"

SETTINGS = {f.name for f in fields(Settings)}
SETTING_ENV = {ENV_PREFIX + name.upper() for name in SETTINGS}
# Fields kept out of repr are secrets: they may only arrive as MOODSHIFT_<FIELD>_FILE.
SECRET_ENV = {ENV_PREFIX + f.name.upper() for f in fields(Settings) if not f.repr}


# -- loading -------------------------------------------------------------------------------------


def k8s_objects() -> list[tuple[str, dict[str, Any]]]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                objects.append((path.name, doc))
    return objects


OBJECTS = k8s_objects()


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for _, obj in OBJECTS if obj["kind"] == kind}


def workloads() -> Iterator[dict[str, Any]]:
    for _, obj in OBJECTS:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield obj


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for workload in workloads():
        spec = workload["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield workload, container


def is_moodshift(image: str) -> bool:
    return image.rsplit("/", 1)[-1].split(":")[0] == IMAGE


def configmap_env(container: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets from its envFrom ConfigMaps and plain env values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(by_kind("ConfigMap")[source["configMapRef"]["name"]]["data"])
    env.update({item["name"]: item["value"] for item in container.get("env", []) if "value" in item})
    return env


def interpolate(value: Any) -> Any:
    """Compose's ``${VAR:-default}`` / ``${VAR}`` with nothing set: what a bare `up` would use."""
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    return value


COMPOSE_MODEL = interpolate(yaml.safe_load(COMPOSE.read_text()))  # PyYAML resolves the << merges
SERVICES = COMPOSE_MODEL["services"]
MOODSHIFT_SERVICES = {name: svc for name, svc in SERVICES.items() if is_moodshift(svc.get("image", ""))}


def settings_of(env: dict[str, Any]) -> Settings:
    """The settings an environment gives, leaving out ``*_FILE`` secrets (their files are not here)."""
    return Settings.load(env={k: str(v) for k, v in env.items() if k.startswith(ENV_PREFIX) and not k.endswith("_FILE")})


def check_settings_env(where: str, env: dict[str, Any]) -> None:
    for name in env:
        if not name.startswith(ENV_PREFIX):
            continue
        base = name.removesuffix("_FILE")
        assert base in SETTING_ENV, f"{where}: {name} is no setting of pipeline.settings.Settings"
        assert name not in SECRET_ENV, f"{where}: secret {name} set directly; use {name}_FILE and a mounted secret"
    settings_of(env)  # the values load as settings: types, choices, window arithmetic


def parse_cli(where: str, args: list[str]) -> Any:
    parser = build_parser()
    try:
        return parser.parse_args([str(arg) for arg in args])
    except SystemExit:
        pytest.fail(f"{where}: `moodshift {shlex.join(map(str, args))}` is rejected by the moodshift CLI")


# -- every file --------------------------------------------------------------------------------


def test_every_yaml_file_under_deploy_parses():
    files = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        list(yaml.safe_load_all(path.read_text()))


# -- Kubernetes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS, ids=lambda v: v or "latest")
def test_k8s_objects_match_the_kubernetes_schema(version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    version = version or kubernetes_validate.latest_version()
    errors = []
    for path, obj in OBJECTS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)  # strict: unknown fields fail
        except kubernetes_validate.ValidationError as error:
            at = "/".join(map(str, error.absolute_path))
            errors.append(f"{path}: {obj['kind']}/{obj['metadata']['name']} at {at}: {error.message}")
    assert not errors, f"against Kubernetes {version}:\n" + "\n".join(errors)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
    assert [image["name"] for image in kustomization.get("images", [])] == [IMAGE]


def test_everything_lives_in_the_namespace():
    assert NAMESPACE in by_kind("Namespace")
    for path, obj in OBJECTS:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{path}: {obj['kind']}/{obj['metadata']['name']}"


def test_k8s_settings_are_real_settings_and_secrets_come_from_files():
    for name, configmap in by_kind("ConfigMap").items():
        check_settings_env(f"ConfigMap {name}", configmap["data"])
    for workload, container in containers():
        where = f"{workload['metadata']['name']}/{container['name']}"
        for item in container.get("env", []):
            assert "value" in item or "valueFrom" in item, where
        check_settings_env(where, configmap_env(container))


def test_k8s_references_resolve():
    configmaps, secrets = by_kind("ConfigMap"), by_kind("Secret")
    claims = by_kind("PersistentVolumeClaim")
    for workload, container in containers():
        where = f"{workload['metadata']['name']}/{container['name']}"
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps, where
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets, where
        for item in container.get("env", []):
            ref = item.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                assert ref["configMapKeyRef"]["key"] in configmaps[ref["configMapKeyRef"]["name"]]["data"], where
            if "secretKeyRef" in ref:
                secret = secrets[ref["secretKeyRef"]["name"]]
                assert ref["secretKeyRef"]["key"] in {**secret.get("data", {}), **secret.get("stringData", {})}, where
        volumes = {volume["name"]: volume for volume in workload["spec"]["template"]["spec"].get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{where}: mounts undeclared volume {mount['name']}"
        for volume in volumes.values():
            if "secret" in volume:
                secret = secrets[volume["secret"]["secretName"]]
                keys = {**secret.get("data", {}), **secret.get("stringData", {})}
                assert {item["key"] for item in volume["secret"].get("items", [])} <= set(keys), where
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, where
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where


def test_k8s_secret_files_are_mounted_secret_keys():
    secrets = by_kind("Secret")
    for workload, container in containers():
        where = f"{workload['metadata']['name']}/{container['name']}"
        volumes = {volume["name"]: volume for volume in workload["spec"]["template"]["spec"].get("volumes", [])}
        for name, value in configmap_env(container).items():
            if not (name.startswith(ENV_PREFIX) and name.endswith("_FILE")):
                continue
            path = PurePosixPath(value)
            mounts = [m for m in container["volumeMounts"] if path.parent == PurePosixPath(m["mountPath"])]
            assert mounts, f"{where}: {name}={value} is in no mounted folder"
            volume = volumes[mounts[0]["name"]]
            assert "secret" in volume, f"{where}: {name} points into a non-secret volume"
            secret = secrets[volume["secret"]["secretName"]]
            items = volume["secret"].get("items")
            files = {item["path"]: item["key"] for item in items} if items else {
                key: key for key in {**secret.get("data", {}), **secret.get("stringData", {})}}
            assert path.name in files, f"{where}: {name}={value}: the secret volume has no file {path.name}"


def _worker() -> tuple[dict[str, Any], dict[str, Any]]:
    worker = by_kind("Deployment").get(WORKER) or by_kind("StatefulSet")[WORKER]
    return worker, worker["spec"]["template"]["spec"]["containers"][0]


def test_k8s_worker_probes_hit_health_on_the_web_port():
    _, container = _worker()
    web_port = settings_of(configmap_env(container)).worker_web_port
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/health", probe
        assert ports.get(get["port"], get["port"]) == web_port, f"{probe} is not on worker_web_port {web_port}"
    annotations = _worker()[0]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(web_port)


def test_k8s_worker_requests_a_gpu_and_fits_the_partitions():
    worker, container = _worker()
    resources = container["resources"]
    assert int(resources["limits"]["nvidia.com/gpu"]) >= 1
    # Extended resources cannot be overcommitted: a request, if given, equals the limit.
    assert resources.get("requests", {}).get("nvidia.com/gpu", resources["limits"]["nvidia.com/gpu"]) == \
        resources["limits"]["nvidia.com/gpu"]
    settings = settings_of(configmap_env(container))
    assert settings.device in ("cuda", "auto") or settings.device.startswith("cuda:")
    assert 1 <= worker["spec"]["replicas"] <= settings.partitions


def test_k8s_services_select_pods_and_name_their_ports():
    pods = [(w["spec"]["template"]["metadata"]["labels"], w["spec"]["template"]["spec"]["containers"])
            for w in workloads()]
    for name, service in by_kind("Service").items():
        selector = service["spec"]["selector"]
        matched = [cs for labels, cs in pods if selector.items() <= labels.items()]
        assert matched, f"Service {name} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for cs in matched:
                names = {p.get("name") for c in cs for p in c.get("ports", [])}
                numbers = {p["containerPort"] for c in cs for p in c.get("ports", [])}
                assert target in names | numbers, f"Service {name}: no container port {target}"


def test_prometheus_discovers_the_k8s_services():
    services = by_kind("Service")
    for job in yaml.safe_load(PROMETHEUS_K8S_CONFIG.read_text())["scrape_configs"]:
        for sd in job["dns_sd_configs"]:
            for name in sd["names"]:
                service_name, namespace, *_ = name.split(".")
                assert namespace == NAMESPACE, name
                service = services[service_name]
                assert service["spec"].get("clusterIP") == "None", f"{service_name}: headless, one record per pod"
                assert sd["port"] in {port["port"] for port in service["spec"]["ports"]}, name
    worker_service = services[WORKER]
    _, container = _worker()
    assert worker_service["spec"]["ports"][0]["port"] == settings_of(configmap_env(container)).worker_web_port


def test_k8s_commands_are_accepted_by_the_cli():
    for workload, container in containers():
        if is_moodshift(container["image"]):
            assert "command" not in container, "keep the image's `moodshift` entrypoint"
            parse_cli(workload["metadata"]["name"], container["args"])


# -- compose -------------------------------------------------------------------------------------


def test_compose_settings_are_real_settings_and_secrets_come_from_files():
    assert MOODSHIFT_SERVICES, "no service runs the moodshift image"
    for name, service in MOODSHIFT_SERVICES.items():
        env = service.get("environment", {})
        check_settings_env(f"compose {name}", env)
        mounted = set(service.get("secrets", []))
        assert mounted <= set(COMPOSE_MODEL["secrets"]), f"compose {name}: undeclared secret"
        for key, value in env.items():
            if key.startswith(ENV_PREFIX) and key.endswith("_FILE"):
                path = PurePosixPath(value)
                assert path.parent == PurePosixPath("/run/secrets") and path.name in mounted, (
                    f"compose {name}: {key}={value} is not a secret the service mounts")


def test_compose_commands_are_accepted_by_the_cli():
    for name, service in MOODSHIFT_SERVICES.items():
        parse_cli(f"compose {name}", service["command"])


def test_compose_worker_has_a_gpu_and_health_on_the_web_port():
    worker = SERVICES["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] for device in devices)
    assert settings_of(worker["environment"]).device == "cuda"
    for name in ("worker", "worker-cpu"):
        check = " ".join(SERVICES[name]["healthcheck"]["test"])
        assert f":{settings_of(SERVICES[name]['environment']).worker_web_port}/health" in check, name
    assert "deploy" not in SERVICES["worker-cpu"], "the CPU worker must not need a GPU"


def test_compose_files_it_references_exist():
    for name, service in SERVICES.items():
        build = service.get("build")
        if build:
            context = (COMPOSE.parent / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), f"compose {name}: no {build['dockerfile']}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).exists(), f"compose {name}: no {source}"
        for env_file in service.get("env_file", []):
            if isinstance(env_file, dict) and env_file.get("required") is False:
                continue
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            assert (COMPOSE.parent / path).is_file(), f"compose {name}: no env_file {path}"
    for name, secret in COMPOSE_MODEL["secrets"].items():
        assert Path(COMPOSE.parent / secret["file"]).exists(), f"secret {name}: no {secret['file']}"


def test_prometheus_discovers_the_compose_services():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    def dns(job: str) -> tuple[set[str], int]:
        (sd,) = jobs[job]["dns_sd_configs"]
        return set(sd["names"]), sd["port"]

    names, port = dns("moodshift-worker")
    for service in ("worker", "worker-cpu"):
        assert names <= set(SERVICES[service]["networks"]["default"]["aliases"]), service
        assert settings_of(SERVICES[service]["environment"]).worker_web_port == port
    names, port = dns("moodshift-connector")
    connectors = {name for name, svc in MOODSHIFT_SERVICES.items() if svc["command"][0] == "ingest"}
    assert names == connectors
    for name in connectors:
        args = parse_cli(name, SERVICES[name]["command"])
        assert args.metrics_port == port, name


def _compose_cli() -> list[str] | None:
    """A Compose v2 CLI: the docker plugin, or a standalone docker-compose (PATH or this venv)."""
    candidates = []
    if shutil.which("docker"):
        candidates.append([shutil.which("docker"), "compose"])
    for path in (shutil.which("docker-compose"), str(Path(sys.executable).parent / "docker-compose")):
        if path and Path(path).is_file():
            candidates.append([path])
    for cli in candidates:
        result = subprocess.run([*cli, "version"], capture_output=True, text=True, timeout=30)
        if result.returncode == 0 and re.search(r"version v?2\.", result.stdout):
            return cli
    return None


def test_docker_compose_config_accepts_the_file():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose v2 CLI here (`docker compose` plugin or docker-compose v2)")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "--profile", "cpu", "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=COMPOSE.parent,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert set(resolved["services"]) == set(SERVICES)
    assert resolved["services"]["worker"]["environment"] == SERVICES["worker"]["environment"]


# -- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_builds_the_moodshift_entrypoint():
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["moodshift"]' in text
    exposed = {int(port) for line in text.splitlines() if line.startswith("EXPOSE") for port in line.split()[1:]}
    defaults = Settings()
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (connector_sd,) = {job["job_name"]: job for job in config["scrape_configs"]}["moodshift-connector"]["dns_sd_configs"]
    assert {defaults.worker_web_port, connector_sd["port"], defaults.ingest_http_port} <= exposed
    for package in ("pipeline", "models", "connectors"):
        assert f"COPY {package} ./{package}" in text
    # Without the user line the containers would run as root despite runAsNonRoot in k8s.
    assert re.search(r"^USER 10001$", text, re.M)
    for workload in workloads():
        assert workload["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
