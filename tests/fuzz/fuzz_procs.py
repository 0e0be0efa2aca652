"""Processes the fuzz and security tests start beside the session stack: the LLM
simulator, and a router of their own with a known (admin) API key, wired to the stack's
counter, budget, cache, compressor and ledger."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tokenrt_testkit.procs import ServiceProcess, start_service, stop_process
from tokenrt_testkit.stack import Stack, free_ports, with_fresh_ports


@dataclass
class Sim:
    process: subprocess.Popen[bytes]
    base_url: str  # http://127.0.0.1:<port>/v1

    def stop(self) -> None:
        stop_process(self.process, grace=5)


def start_sim(log: Path) -> Sim:
    port = free_ports(1)[0]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokenrt_router.sim.cli", "sim", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return Sim(process, f"http://127.0.0.1:{port}/v1")
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    stop_process(process, grace=1)
    raise RuntimeError(f"the simulator did not start:\n{log.read_text()[-2000:]}")


@dataclass
class KeyedRouter:
    service: ServiceProcess
    key: str
    org: str
    project: str

    @property
    def address(self) -> str:
        return self.service.address

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),)

    @property
    def http_base(self) -> str:
        return f"http://{self.service.env['TOKENRT_ROUTER_HTTP_ADDR']}/v1"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.service.env['TOKENRT_ROUTER_METRICS_PORT']}/metrics"


def start_keyed_router(stack: Stack, folder: Path, sim: Sim, key: str,
                       **env: str) -> KeyedRouter:
    """A router with one admin static key for org `fuzz-org-<pid>`, on fresh ports."""
    org, project = f"fuzz-org-{os.getpid()}", "fuzz-project"
    keys = folder / "keys.yaml"
    keys.write_text(f"- {{key: {key}, org: {org}, project: {project}, admin: true, "
                    f"name: fuzz}}\n")
    router_env = with_fresh_ports(stack.env, "router")
    router_env.update({
        "TOKENRT_ROUTER_KEYS_FILE": str(keys),
        "TOKENRT_ROUTER_KEYS": "",
        "TOKENRT_ROUTER_SIM_BASE_URL": sim.base_url,
        "TOKENRT_ROUTER_PROVIDER_RETRIES": "0",
        "TOKENRT_USAGE_OUTBOX_PATH": str(folder / "outbox.sqlite3"),
    })
    router_env.update(env)
    service = start_service("router", router_env, folder / "router.log")
    return KeyedRouter(service, key, org, project)
