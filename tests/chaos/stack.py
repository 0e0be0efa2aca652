"""A private stack for the fault suite: its own NATS (JetStream, own store), PostgreSQL and
Valkey on fresh ports, the six services and the simulator, each a process this module
started and may kill, stop and start again. The machine's shared NATS, Postgres and Redis
are never touched.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenrt_cli import embedded
from tokenrt_cli.infra import create_database
from tokenrt_cli.procs import ProcessRecord, stop_all
from tokenrt_common.settings import SERVICES
from tokenrt_testkit.procs import ServiceProcess, start_service, stop_process
from tokenrt_testkit.stack import free_ports, stack_env, with_fresh_ports

SERVING = health_pb2.HealthCheckResponse.SERVING
# Run in a process of its own: as root, pg_ctl runs as another user, which needs a fork()
# (not vfork); in this process gRPC's fork handlers then meet the load's threads in gRPC and
# the child can crash (seen: a segmentation fault and "pg_ctl failed").
POSTGRES_HELPER = """
import json, sys
from pathlib import Path
from tokenrt_cli import embedded
from tokenrt_cli.procs import ProcessRecord
args = json.loads(sys.argv[1])
if args["do"] == "start":
    rec = embedded.start_postgres("127.0.0.1", args["port"], "postgres", Path(args["state"]))
    print(json.dumps(rec.to_json()))
else:
    print(json.dumps(embedded.stop_postgres(ProcessRecord.from_json(args["record"]))))
"""
# Start order: the ledger before the budget (which rebuilds from it), the router last; the
# services of one group start side by side (their imports use both cores).
START_GROUPS = (("counter", "cache", "compressor", "ledger"), ("budget",), ("router",))
START_ORDER = tuple(name for group in START_GROUPS for name in group)
INFRA = ("nats", "postgres", "redis")


@dataclass(frozen=True)
class Tenant:
    """One API key of the load: its org and whether it gets a hard budget per phase."""

    key: str
    org: str
    project: str
    hard: bool = False


TENANTS = (
    Tenant("trk_chaos_free_1", "chaos-free", "p"),
    Tenant("trk_chaos_hard_1", "chaos-hard", "p", hard=True),
    Tenant("trk_chaos_soft_1", "chaos-soft", "p"),
)


def _wait_port(port: int, limit: float = 30) -> None:
    import socket

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing answers on 127.0.0.1:{port} after {limit:.0f} s")


def _all(results: Iterator[Any]) -> None:
    """Wait for every call of a pool.map (the first failure is raised)."""
    for _ in results:
        pass


def _postgres(args: dict[str, Any]) -> Any:
    done = subprocess.run([sys.executable, "-c", POSTGRES_HELPER, json.dumps(args)],
                          capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise AssertionError(f"embedded Postgres {args['do']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class ChaosStack:
    """Everything the fault suite runs; `up()`, faults, `down()`."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    infra: dict[str, ProcessRecord] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)
    sim: subprocess.Popen[bytes] | None = None
    sim_url: str = ""
    # phase -> what the fault suite measured (test_chaos.run_phase)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    # --- life cycle ---

    def up(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        nats_port, pg_port, redis_port, sim_port, http_port = free_ports(5)
        self.ports = {"nats": nats_port, "postgres": pg_port, "redis": redis_port}
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        keys = ";".join(f"{t.key}={t.org}/{t.project}" for t in TENANTS)
        env = stack_env(
            self.root / "state",
            TOKENRT_NATS_URL=f"nats://127.0.0.1:{nats_port}",
            TOKENRT_POSTGRES_DSN=f"postgresql://postgres@127.0.0.1:{pg_port}/tokenrt_chaos",
            TOKENRT_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            TOKENRT_ROUTER_KEYS=keys,
            TOKENRT_ROUTER_SIM_BASE_URL=self.sim_url + "/v1",
            TOKENRT_ROUTER_HTTP_ADDR=f"127.0.0.1:{http_port}",
            # A timed-out provider is given up on well inside the callers' deadline.
            TOKENRT_ROUTER_PROVIDER_TIMEOUT_SECONDS="3",
            TOKENRT_ROUTER_PROVIDER_RETRIES="1",
            TOKENRT_ROUTER_MAX_RETRY_AFTER_SECONDS="1",
            TOKENRT_BUDGET_REBUILD_SOURCE="ledger",
            # What a SIGKILLed ledger had fetched is redelivered after 5 s, not 30 s (the
            # kill-ledger phase waited that out; nothing else changes).
            TOKENRT_LEDGER_ACK_WAIT_SECONDS="5",
            TOKENRT_LOG_LEVEL="info")
        (self.root / "state").mkdir(parents=True, exist_ok=True)
        env["TOKENRT_USAGE_OUTBOX_PATH"] = str(self.root / "state" / "router-outbox.sqlite3")
        self.env = env
        with ThreadPoolExecutor(len(INFRA) + 1) as pool:  # side by side: initdb takes seconds
            _all(pool.map(self._start_infra_or_sim, (*INFRA, "sim")))
        asyncio.run(create_database(env["TOKENRT_POSTGRES_DSN"], timeout_seconds=10))
        # Service ports picked now that NATS, Postgres, Valkey and the simulator listen.
        self.env = env = with_fresh_ports(env, *SERVICES)
        for group in START_GROUPS:
            with ThreadPoolExecutor(len(group)) as pool:
                _all(pool.map(self.start, group))

    def _start_infra_or_sim(self, kind: str) -> None:
        if kind == "sim":
            self.start_sim()
        else:
            self.start_infra(kind)

    def down(self) -> None:
        for name in reversed(START_ORDER):
            proc = self.services.pop(name, None)
            if proc is not None:
                stop_process(proc.process, grace=10)
        if self.sim is not None:
            stop_process(self.sim, grace=5)
            self.sim = None
        for kind in reversed(INFRA):
            if kind in self.infra:
                self.stop_infra(kind)

    # --- services ---

    def start(self, name: str) -> float:
        """Start (or start again) one service; seconds until it was SERVING."""
        n = self.starts.get(name, 0)
        self.starts[name] = n + 1
        t0 = time.monotonic()
        self.services[name] = start_service(name, self.env,
                                            self.root / "logs" / f"{name}-{n}.log", timeout=120)
        return time.monotonic() - t0

    def extra_router(self, folder: Path, **overrides: str) -> ServiceProcess:
        """Another router on the same stack, on ports of its own, with its own outbox."""
        env = with_fresh_ports(self.env, "router")
        env.update(TOKENRT_ROUTER_HTTP_ADDR=f"127.0.0.1:{free_ports(1)[0]}",
                   TOKENRT_USAGE_OUTBOX_PATH=str(folder / "outbox.sqlite3"), **overrides)
        return start_service("router", env, folder / f"router-{time.monotonic_ns()}.log",
                             timeout=120)

    def sigkill(self, name: str) -> None:
        proc = self.services[name].process
        proc.kill()
        proc.wait(10)

    def repair(self) -> None:
        """After a phase that could not finish: start what it left stopped."""
        for kind in INFRA:
            if kind not in self.infra:
                self.start_infra(kind)
        for name in self.exited():
            self.start(name)
        self.sim_fault(None)

    def exited(self) -> list[str]:
        return [n for n, p in self.services.items() if p.process.poll() is not None]

    def health(self) -> dict[str, str]:
        """Readiness of each service: SERVING, NOT_SERVING or UNREACHABLE."""
        out: dict[str, str] = {}
        for name in SERVICES:
            with grpc.insecure_channel(self.env[f"TOKENRT_{name.upper()}_ADDR"]) as ch:
                try:
                    reply = health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(service=""), timeout=1)
                    out[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                except grpc.RpcError:
                    out[name] = "UNREACHABLE"
        return out

    def wait_all_serving(self, limit: float) -> tuple[float | None, dict[str, str]]:
        """Seconds until all six are SERVING (None if not within `limit`), last health."""
        t0 = time.monotonic()
        states = self.health()
        while any(s != "SERVING" for s in states.values()):
            if time.monotonic() - t0 > limit:
                return None, states
            time.sleep(0.2)
            states = self.health()
        return time.monotonic() - t0, states

    # --- infrastructure ---

    def start_infra(self, kind: str) -> None:
        state = self.root / "infra"
        (state / "logs").mkdir(parents=True, exist_ok=True)
        port = self.ports[kind]
        if kind == "nats":
            self.infra[kind] = embedded.start_nats("127.0.0.1", port, state)
        elif kind == "redis":
            self.infra[kind] = embedded.start_valkey("127.0.0.1", port, state, None, None)
        else:
            self.infra[kind] = ProcessRecord.from_json(
                _postgres({"do": "start", "port": port, "state": str(state)}))
        _wait_port(port)

    def stop_infra(self, kind: str) -> None:
        record = self.infra.pop(kind)
        if kind == "postgres":
            _postgres({"do": "stop", "record": record.to_json()})
        else:
            stop_all([record], grace=10)

    # --- simulator (the provider) ---

    def start_sim(self) -> None:
        port = self.sim_url.rsplit(":", 1)[1]
        log = (self.root / "logs" / "sim.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.sim = subprocess.Popen([sys.executable, "-m", "tokenrt_router.sim.cli", "sim",
                                         "--port", port, "--latency-ms", "20"],
                                        env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.sim_url + "/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("the simulator did not start; see " + str(log))
        # Its first answer loads the tokenizer (seconds on a busy machine): not a fault.
        warm = urllib.request.Request(
            self.sim_url + "/v1/chat/completions", method="POST",
            data=json.dumps({"model": "gpt-4o-mini", "max_tokens": 4,
                             "messages": [{"role": "user", "content": "warm up"}]}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(warm, timeout=60) as reply:
            assert reply.status == 200

    def sim_pace(self, model: str, latency_ms: int) -> None:
        """Answers for `model` take `latency_ms`, and so does a stream's first chunk (until
        sim_fault(None))."""
        req = urllib.request.Request(
            self.sim_url + "/sim/pace", method="POST",
            data=json.dumps({"model": model, "latency_ms": latency_ms,
                             "ttft_ms": latency_ms}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as reply:
            assert reply.status == 200

    def sim_fault(self, fault: str | None) -> None:
        """Every model fails with `fault` until called again with None."""
        if fault is None:
            req = urllib.request.Request(self.sim_url + "/sim/faults", method="DELETE")
        else:
            req = urllib.request.Request(
                self.sim_url + "/sim/faults", method="POST",
                data=json.dumps({"model": "*", "fault": fault, "count": -1}).encode(),
                headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as reply:
            assert reply.status == 200
