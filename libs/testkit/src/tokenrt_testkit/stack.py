"""A real tokenrt stack for tests (six service processes) on real NATS,
PostgreSQL and Redis, started once per session through `tokenrt up --detach`.

Infrastructure URLs come from the environment (TOKENRT_NATS_URL, TOKENRT_POSTGRES_DSN,
TOKENRT_REDIS_URL) or the local defaults; where nothing answers, `tokenrt up` starts
embedded servers, so the suite runs on a machine that has none installed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenrt_common.settings import SERVICES, Settings, load_settings

ROOT = Path(__file__).resolve().parents[4]
BIN = Path(sys.executable).parent
TOKENRT = str(BIN / "tokenrt")

INFRA_DEFAULTS = {
    "TOKENRT_NATS_URL": "nats://127.0.0.1:4222",
    "TOKENRT_POSTGRES_DSN": "postgresql://postgres@127.0.0.1:5432/tokenrt_test",
    "TOKENRT_REDIS_URL": "redis://127.0.0.1:6379/0",
}


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (bound once by the kernel, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def stack_env(state_dir: Path, **overrides: str) -> dict[str, str]:
    """A full environment for one stack: its own state folder and free service ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRT_")}
    env.update({k: os.environ.get(k, v) for k, v in INFRA_DEFAULTS.items()})
    ports = free_ports(2 * len(SERVICES) + 2)
    for i, service in enumerate(SERVICES):
        env[f"TOKENRT_{service.upper()}_ADDR"] = f"127.0.0.1:{ports[2 * i]}"
        env[f"TOKENRT_{service.upper()}_METRICS_PORT"] = str(ports[2 * i + 1])
    env["TOKENRT_ROUTER_HTTP_ADDR"] = f"127.0.0.1:{ports[-1]}"  # the OpenAI-compatible endpoint
    env["TOKENRT_ROUTER_SIM_BASE_URL"] = f"http://127.0.0.1:{ports[-2]}/v1"  # `up` starts it
    # Usage events of this stack only: other stacks on the machine share its NATS, and
    # ledgers on one stream and durable would split the events between their databases.
    tag = uuid.uuid4().hex[:8]
    env.update({"TOKENRT_USAGE_STREAM": f"USAGE_{tag}",
                "TOKENRT_USAGE_SUBJECT_PREFIX": f"t{tag}.usage.v1",
                "TOKENRT_USAGE_DLQ_SUBJECT": f"t{tag}.usage.dlq.v1",
                "TOKENRT_LEDGER_DURABLE": f"ledger_{tag}"})
    env["TOKENRT_STATE_DIR"] = str(state_dir)
    # tiktoken cannot download here; `make test` sets this, a bare `pytest` may not.
    env.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
    env["TOKENRT_LOG_FORMAT"] = "json"
    env.update(overrides)
    return env


def with_fresh_ports(env: dict[str, str], *services: str) -> dict[str, str]:
    """A copy of `env` where `services` listen on new free ports that no other service of
    `env` is given (another replica of a service, or one that must be unreachable)."""
    taken = {v.rsplit(":", 1)[-1] for k, v in env.items()
             if k.endswith(("_ADDR", "_METRICS_PORT"))}
    ports: list[str] = []
    while len(ports) < 2 * len(services) + 1:
        ports += [p for p in map(str, free_ports(2 * len(services) + 1)) if p not in taken]
    out = dict(env)
    for i, service in enumerate(services):
        out[f"TOKENRT_{service.upper()}_ADDR"] = f"127.0.0.1:{ports[2 * i]}"
        out[f"TOKENRT_{service.upper()}_METRICS_PORT"] = ports[2 * i + 1]
        if service == "router":  # its HTTP endpoint too
            out["TOKENRT_ROUTER_HTTP_ADDR"] = f"127.0.0.1:{ports[-1]}"
    return out


@dataclass
class Stack:
    """A running tokenrt stack started by the `tokenrt` command."""

    env: dict[str, str]

    @property
    def settings(self) -> Settings:
        return load_settings(self.env)

    @property
    def state_dir(self) -> Path:
        return Path(self.env["TOKENRT_STATE_DIR"])

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TOKENRT, *args], env=self.env, cwd=ROOT, text=True,
                              capture_output=True, timeout=timeout)

    def up(self) -> None:
        result = self.cli("up", "--detach")
        assert result.returncode == 0, f"tokenrt up failed:\n{result.stdout}\n{result.stderr}"

    def down(self) -> None:
        self.cli("down")

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "--json", timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def log_path(self, service: str) -> Path:
        return self.state_dir / "logs" / f"{service}.log"
