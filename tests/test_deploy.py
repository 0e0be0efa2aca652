"""Static checks of the deployment files: deploy/Dockerfile, docker-compose.yml, deploy/k8s/.

No Docker engine or cluster is needed. What is checked is what would break a deployment:
files that do not parse, a service missing from compose or Kubernetes, a probe or port that
disagrees with the configuration the service reads, settings the service would reject, an
image that would run as root or not know which service to start. The services' own settings
loader and their declared dependencies (SPEC.needs in each __main__.py) are the reference.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
import yaml

from tokenrt_common.server import LIVENESS
from tokenrt_common.settings import SERVICES, load_settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"

INFRA = ("nats", "postgres", "redis")


def main_module(service: str) -> Path:
    return ROOT / "services" / service / "src" / f"tokenrt_{service}" / "__main__.py"


def needs(service: str) -> set[str]:
    """The infrastructure a service declares in its ServiceSpec (read without importing it)."""
    source = main_module(service).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "needs":
            return {elt.value for elt in ast.walk(node.value)
                    if isinstance(elt, ast.Constant) and isinstance(elt.value, str)}
    raise AssertionError(f"services/{service}: no needs= in its ServiceSpec")


def interpolate(value: str) -> str:
    """Compose-style ${VAR:-default} / ${VAR}, with the defaults (the host env is not used)."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)


def port_of(addr: str) -> int:
    return int(addr.rpartition(":")[2])


# --- every YAML file parses ------------------------------------------------------------------

YAML_FILES = [COMPOSE, *sorted(K8S.glob("*.yaml"))]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"


# --- Dockerfile ------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and heredoc bodies skipped."""
    out: list[tuple[str, str]] = []
    lines = iter(DOCKERFILE.read_text().splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\"):
            nxt = next(lines)
            line = line[:-1] + " " + ("" if nxt.lstrip().startswith("#") else nxt.strip())
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        heredoc = re.search(r"<<-?'?\"?(\w+)", rest)
        if heredoc:
            for body in lines:
                if body.strip() == heredoc.group(1):
                    break
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in dockerfile_instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def heredoc(target: str) -> str:
    match = re.search(rf"<<'EOF' {re.escape(target)}\n(.*?)\nEOF\n", DOCKERFILE.read_text(), re.S)
    assert match, f"Dockerfile writes no {target}"
    return match.group(1)


def test_dockerfile_builds_any_service_by_arg() -> None:
    builder, runtime = stages()[-2], stages()[-1]
    assert builder[0][1].endswith("AS builder") and runtime[0][1].endswith("AS runtime")
    assert ("ARG", "SERVICE") in builder and ("ARG", "SERVICE") in runtime
    base = [rest for word, rest in dockerfile_instructions() if word == "ARG"]
    assert "PYTHON_IMAGE=python:3.11-slim" in base
    syncs = [rest for word, rest in builder if word == "RUN" and "uv sync" in rest]
    assert syncs, "the builder never runs uv sync"
    for run in syncs:
        assert "--frozen" in run and "--no-dev" in run
        assert '--package "tokenrt-${SERVICE}"' in run
    # The last sync installs the workspace packages as wheels, so the venv stands alone.
    assert "--no-editable" in syncs[-1]
    assert any(w == "COPY" and "/opt/venv" in r and "--from=builder" in r for w, r in runtime)


def test_dockerfile_copies_every_workspace_member() -> None:
    """`uv sync --frozen` needs the lock and every workspace member's pyproject.toml: each
    folder the root pyproject's members live in must reach both the manifests stage (the
    dependency layer) and the builder (the packages themselves)."""
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    folders = {glob.split("/")[0] for glob in members["members"]}
    by_stage = {stage[0][1].split()[-1]: {src for word, rest in stage
                                          if word == "COPY" and "--from" not in rest
                                          for src in shlex.split(rest)[:-1]}
                for stage in stages()}
    assert {"pyproject.toml", "uv.lock"} <= by_stage["builder"]
    for stage in ("manifests", "builder"):
        assert folders <= by_stage[stage], f"{stage} stage misses {folders - by_stage[stage]}"
    assert any(w == "COPY" and "--from=manifests" in r for w, r in stages()[-2])
    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from" not in rest and "<<" not in rest:
            for src in shlex.split(rest)[:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"


def test_dockerfile_runs_as_non_root() -> None:
    users = [rest for word, rest in stages()[-1] if word == "USER"]
    assert users, "the runtime stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit() and int(user) >= 1000


def test_dockerfile_entrypoint_starts_the_named_service() -> None:
    runtime = stages()[-1]
    env = " ".join(rest for word, rest in runtime if word == "ENV")
    assert "SERVICE_MODULE=tokenrt_${SERVICE}" in env
    assert "SERVICE_NAME=${SERVICE}" in env
    (entry,) = [yaml.safe_load(rest) for word, rest in runtime if word == "ENTRYPOINT"]
    assert entry[:2] == ["/bin/sh", "-c"]
    assert entry[2].startswith('exec python -m "$SERVICE_MODULE"')
    # Every service the image can be built for is a real module with a __main__.
    allowed = re.search(r"case \"\$\{SERVICE\}\" in[\s\\]+([\w|]+)\)", DOCKERFILE.read_text())
    assert allowed and set(allowed.group(1).split("|")) == set(SERVICES)
    for service in SERVICES:
        assert main_module(service).is_file()


def test_dockerfile_env_is_accepted_by_the_settings_loader() -> None:
    env = {}
    for word, rest in stages()[-1]:
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    assert env["TOKENRT_BIND_HOST"] == "0.0.0.0" and env["TOKENRT_LOG_FORMAT"] == "json"
    assert env["TIKTOKEN_CACHE_DIR"]
    assert env["TOKENRT_STATE_DIR"].startswith("/")
    assert f"chown tokenrt:tokenrt {env['TOKENRT_STATE_DIR']}" in DOCKERFILE.read_text()
    load_settings({k: v for k, v in env.items() if k.startswith("TOKENRT_")})


def test_dockerfile_has_a_grpc_healthcheck() -> None:
    (check,) = [rest for word, rest in stages()[-1] if word == "HEALTHCHECK"]
    assert "CMD" in check and "tokenrt-healthcheck" in check
    compile(heredoc("/usr/local/bin/tokenrt-healthcheck"), "tokenrt-healthcheck", "exec")


def test_healthcheck_script_reports_serving_status(tmp_path: Path) -> None:
    """Run the image's health check script against a real grpc.health.v1 server."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    script = tmp_path / "tokenrt-healthcheck"
    script.write_text(heredoc("/usr/local/bin/tokenrt-healthcheck"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": os.environ.get("PATH", ""), "SERVICE_NAME": "cache",
           "TOKENRT_CACHE_ADDR": f"cache:{port}"}

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                              text=True, timeout=30)

    down = check()
    assert down.returncode != 0 and "UNAVAILABLE" in down.stderr

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        not_serving = check()
        assert not_serving.returncode != 0 and "NOT_SERVING" in not_serving.stderr
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert check().returncode == 0
    finally:
        server.stop(None)


# --- docker-compose.yml ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_infra(service: str, dependency: str) -> str:
    """The compose service that provides a dependency to a tokenrt service."""
    return "redis-cache" if (service, dependency) == ("cache", "redis") else dependency


def test_compose_has_every_service_with_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in (*SERVICES, *INFRA, "redis-cache"):
        assert name in services, f"compose has no {name}"
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"


def test_compose_builds_each_service_from_the_dockerfile(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        build = compose["services"][name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert build["args"]["SERVICE"] == name
        assert compose["services"][name]["healthcheck"]["test"] == ["CMD", "tokenrt-healthcheck"]


def test_compose_start_order_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SERVICES:
        depends = services[name].get("depends_on", {})
        for dependency in needs(name):
            infra = compose_infra(name, dependency)
            assert depends.get(infra, {}).get("condition") == "service_healthy", \
                f"{name} needs {dependency} but does not wait for {infra} to be healthy"
        for target, how in depends.items():
            assert target in services and how["condition"] == "service_healthy"
            assert "healthcheck" in services[target]


def test_compose_environment_is_valid_and_consistent(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SERVICES:
        env = {k: interpolate(str(v)) for k, v in services[name]["environment"].items()}
        settings = load_settings({k: v for k, v in env.items() if k.startswith("TOKENRT_")})
        assert settings.bind_host == "0.0.0.0"
        for other in SERVICES:  # each address names the compose service that listens there
            assert settings.endpoint(other).host == other
        endpoint = settings.endpoint(name)
        published = {p.split(":")[-1] for p in services[name].get("ports", [])}
        assert published <= {str(endpoint.port), str(endpoint.metrics_port)}
        for dependency, key in (("nats", "nats_url"), ("postgres", "postgres_dsn"),
                                ("redis", "redis_url")):
            host = re.search(r"[@/]([\w-]+):\d+", getattr(settings, key)).group(1)
            if dependency in needs(name):
                assert host == compose_infra(name, dependency)
        mounts = [v for v in services[name]["volumes"] if v.endswith(":ro")]
        assert any(m.split(":")[-2] == env["TIKTOKEN_CACHE_DIR"] for m in mounts)
        # The containers are read-only: the state dir (usage outbox) must be mounted writable,
        # and the router's must outlive the container.
        assert services[name]["read_only"] is True
        writable = [v.split(":")[1] for v in services[name]["volumes"] if not v.endswith(":ro")]
        assert settings.state_dir in [*services[name]["tmpfs"], *writable]
        if name == "router":
            assert settings.state_dir in writable
    grace = load_settings({k: interpolate(str(v)) for k, v in
                           services["router"]["environment"].items()
                           if k.startswith("TOKENRT_")}).shutdown_grace_seconds
    for name in SERVICES:
        stop = services[name]["stop_grace_period"]
        assert int(stop.rstrip("s")) > grace


def test_compose_infrastructure(compose: dict[str, Any]) -> None:
    services = compose["services"]
    nats = services["nats"]
    assert nats["image"].startswith("nats:2.10")
    assert "-js" in nats["command"] and nats["command"][nats["command"].index("-sd") + 1] == "/data"
    assert any(v.endswith(":/data") for v in nats["volumes"])
    assert services["postgres"]["image"] == "postgres:16"
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])
    for name in ("redis", "redis-cache"):
        assert services[name]["image"] == "redis:7"
    cache = services["redis-cache"]["command"]
    assert cache[cache.index("--maxmemory-policy") + 1] == "allkeys-lru" and "--maxmemory" in cache
    state = services["redis"]["command"]
    assert state[state.index("--maxmemory-policy") + 1] == "noeviction"
    declared = set(compose.get("volumes", {}))
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("$", ".", "/")):
                assert source in declared, f"volume {source} is not declared"


# --- Kubernetes ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk, "kustomization.yaml and the files in deploy/k8s differ"
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for name in listed:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc:
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in objects, f"{key} defined twice"
                objects[key] = doc
    objects[("Kustomization", "")] = kustomization
    return objects


@pytest.fixture(scope="module")
def config(k8s: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    data = k8s[("ConfigMap", "tokenrt-config")]["data"]
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    return data


def test_k8s_namespace_and_configmap(k8s: dict, config: dict[str, str]) -> None:
    assert ("Namespace", "tokenrt") in k8s
    assert k8s[("Kustomization", "")]["namespace"] == "tokenrt"
    settings = load_settings({k: v for k, v in config.items() if k.startswith("TOKENRT_")})
    assert settings.bind_host == "0.0.0.0" and settings.log_format == "json"
    for url in (settings.nats_url, settings.postgres_dsn, settings.redis_url,
                config["CACHE_REDIS_URL"]):
        assert ".svc" in url, f"{url} is not a cluster service address"
    assert config["TIKTOKEN_CACHE_DIR"]


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_deployment(service: str, k8s: dict, config: dict[str, str]) -> None:
    settings = load_settings({k: v for k, v in config.items() if k.startswith("TOKENRT_")})
    endpoint = settings.endpoint(service)
    deployment = k8s[("Deployment", service)]
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    container = container_of(deployment)

    assert container["image"].split(":")[0] == f"tokenrt/{service}"
    images = {i["name"] for i in k8s[("Kustomization", "")]["images"]}
    assert f"tokenrt/{service}" in images

    refs = [s.get("configMapRef", {}).get("name") for s in container["envFrom"]]
    assert "tokenrt-config" in refs
    env = {e["name"]: e for e in container.get("env", [])}
    assert all(not name.startswith("TOKENRT_") or name[8:].lower() in settings.__dataclass_fields__
               for name in env)
    if service == "cache":
        ref = env["TOKENRT_REDIS_URL"]["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == "tokenrt-config" and ref["key"] in config
    assert spec["enableServiceLinks"] is False  # injected *_PORT variables would be rejected

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": endpoint.port, "metrics": endpoint.metrics_port}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == endpoint.port, f"{service} {probe}"
    # Readiness is the overall ("") status, which follows the dependencies; liveness asks
    # the entry that only says the process serves (tokenrt_common.server.LIVENESS).
    assert "service" not in container["readinessProbe"]["grpc"]
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS

    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])

    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = int(pre_stop[1]) + settings.shutdown_grace_seconds
    assert spec["terminationGracePeriodSeconds"] > drain

    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] >= 1000
    # A read-only root file system: every place the service writes must be a volume.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", config["TIKTOKEN_CACHE_DIR"], settings.state_dir} <= mounts

    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(endpoint.metrics_port)

    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_service_hpa_and_pdb_match_the_deployment(service: str, k8s: dict,
                                                      config: dict[str, str]) -> None:
    settings = load_settings({k: v for k, v in config.items() if k.startswith("TOKENRT_")})
    endpoint = settings.endpoint(service)
    labels = k8s[("Deployment", service)]["spec"]["template"]["metadata"]["labels"]

    svc = k8s[("Service", service)]
    assert endpoint.host == service, "TOKENRT_<SVC>_ADDR must name the Service"
    assert svc["spec"]["selector"].items() <= labels.items()
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"]["port"] == endpoint.port and ports["grpc"]["targetPort"] == "grpc"

    hpa = k8s[("HorizontalPodAutoscaler", service)]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": service}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu"
               for m in hpa["spec"]["metrics"])
    assert "replicas" not in k8s[("Deployment", service)]["spec"], "the HPA owns the count"

    pdb = k8s[("PodDisruptionBudget", service)]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert hpa["spec"]["minReplicas"] >= 2 or pdb["spec"].get("maxUnavailable") is not None
