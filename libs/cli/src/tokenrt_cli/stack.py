"""The whole stack: infrastructure, six service processes, the LLM simulator, and the state
file that lists them.

`<state>/stack.json` records every process `up` started (kind, pid, command line, start
time, port, data folder, embedded or not), written as each one starts, so `down` stops
exactly those and nothing else, even after an `up` that failed half-way. With no router
API key configured, `up` gives the router a demo key (see `demokey`).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tokenrt_cli import health, simulator
from tokenrt_cli.demokey import with_demo_key
from tokenrt_cli.embedded import port_is_free
from tokenrt_cli.infra import InfraEntry, InfraError, ensure_infra, infra_urls, stop_infra
from tokenrt_cli.probe import INFRA, probe_all
from tokenrt_cli.procs import ProcessRecord, is_ours, launch, stop_all, tail
from tokenrt_cli.simulator import SimEntry, SimError
from tokenrt_common.settings import SERVICES, Settings

STATE_FILE = "stack.json"
UP_TIMEOUT = 60.0

Say = Callable[[str], None]


class StackError(RuntimeError):
    """`up` or `down` cannot go on; `exit_code` 2 for bad configuration, else 1."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    address: str
    metrics_port: int
    process: ProcessRecord


@dataclass
class Stack:
    """What one `up` started, as kept in `<state>/stack.json`."""

    state_dir: Path
    owner_pid: int
    detached: bool
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    infra: dict[str, InfraEntry] = field(default_factory=dict)
    services: dict[str, ServiceEntry] = field(default_factory=dict)
    sim: SimEntry | None = None
    # The service processes this very process started (not saved): their exit codes.
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def path(self) -> Path:
        return self.state_dir / STATE_FILE

    def processes(self) -> list[ProcessRecord]:
        procs = [s.process for s in self.services.values()]
        if self.sim is not None and self.sim.process is not None:
            procs.append(self.sim.process)
        return procs + [e.process for e in self.infra.values() if e.process is not None]

    def running(self) -> list[ProcessRecord]:
        return [p for p in self.processes() if is_ours(p)]

    def save(self) -> None:
        data: dict[str, Any] = {
            "version": 1, "state_dir": str(self.state_dir), "owner_pid": self.owner_pid,
            "detached": self.detached, "started_at": self.started_at,
            "infra": {k: {"url": e.url, "embedded": e.embedded,
                          "process": e.process.to_json() if e.process else None}
                      for k, e in self.infra.items()},
            "services": {n: {"address": s.address, "metrics_port": s.metrics_port,
                             "process": s.process.to_json()} for n, s in self.services.items()},
            "sim": self.sim.to_json() if self.sim else None,
        }
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.path)

    @classmethod
    def load(cls, state_dir: Path) -> Stack | None:
        try:
            data = json.loads((state_dir / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise StackError(f"{state_dir / STATE_FILE} is not valid JSON ({exc}); "
                             "stop its processes by hand and delete it") from None
        stack = cls(state_dir, data["owner_pid"], data["detached"], data["started_at"])
        for kind, e in data["infra"].items():
            proc = ProcessRecord.from_json(e["process"]) if e["process"] else None
            stack.infra[kind] = InfraEntry(kind, e["url"], e["embedded"], proc)
        for name, s in data["services"].items():
            stack.services[name] = ServiceEntry(name, s["address"], s["metrics_port"],
                                                ProcessRecord.from_json(s["process"]))
        if data.get("sim"):
            stack.sim = SimEntry.from_json(data["sim"])
        return stack

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """One `up` or `down` at a time per state folder."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(f"another tokenrt up or down is busy with {state_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_service_ports(settings: Settings) -> None:
    """Every service's gRPC and metrics port must be free on the bind host."""
    for name in SERVICES:
        endpoint = settings.endpoint(name)
        for key, port in ((f"{name}_addr", endpoint.port),
                          (f"{name}_metrics_port", endpoint.metrics_port)):
            if not port_is_free(settings.bind_host, port):
                raise StackError(f"TOKENRT_{key.upper()}: port {port} on {settings.bind_host} "
                                 "is already in use", exit_code=2)


def service_command(name: str) -> list[str]:
    return [sys.executable, "-m", f"tokenrt_{name}"]


async def up(settings: Settings, *, detach: bool = True, limit_seconds: float = UP_TIMEOUT,
             say: Say = print, reuse: bool = False) -> Stack:
    """Start infrastructure (embedded where needed) and the six services; wait for SERVING.

    Refuses (StackError) when a stack from the same state folder still runs, unless
    `reuse`: then that stack is returned as it is. On any failure or cancellation,
    everything started so far is stopped again and stack.json removed.
    """
    state = settings.state_path
    with state_lock(state):
        old = Stack.load(state)
        if old is not None:
            alive = old.running()
            if alive and reuse:
                return old
            if alive:
                raise StackError(f"a stack from {state} is already running (pids "
                                 f"{', '.join(str(p.pid) for p in alive)}); "
                                 "run `tokenrt down` first")
            old.remove()
        check_service_ports(settings)
        (state / "logs").mkdir(parents=True, exist_ok=True)
        stack = Stack(state, os.getpid(), detach)
        try:
            await _start(settings, stack, limit_seconds, say)
        except BaseException:
            _stop(stack, settings.shutdown_grace_seconds, say=lambda line: None)
            stack.remove()
            raise
    return stack


async def _start(settings: Settings, stack: Stack, limit_seconds: float, say: Say) -> None:
    def on_infra(entry: InfraEntry) -> None:
        stack.infra[entry.kind] = entry
        stack.save()

    try:
        found = await ensure_infra(settings, stack.state_dir, on_start=on_infra, say=say)
    except InfraError as exc:
        raise StackError(str(exc)) from None
    stack.infra = found
    stack.save()
    settings = with_demo_key(settings, stack.state_dir)
    env = os.environ | settings.to_env()
    try:
        stack.sim = await simulator.ensure_sim(settings.router_sim_base_url,
                                               stack.state_dir / "logs", env)
    except SimError as exc:
        say(f"tokenrt: {exc}")
    stack.save()
    for name in SERVICES:
        endpoint = settings.endpoint(name)
        proc, child = launch("service", name, service_command(name),
                             stack.state_dir / "logs" / f"{name}.log", env=env, port=endpoint.port)
        stack.children[name] = child
        stack.services[name] = ServiceEntry(name, endpoint.address, endpoint.metrics_port, proc)
        stack.save()
    await wait_serving(stack, limit_seconds)
    if stack.sim is not None:
        try:
            await simulator.wait_answering(stack.sim)
        except SimError as exc:
            raise StackError(str(exc)) from None


async def wait_serving(stack: Stack, limit_seconds: float) -> None:
    """Until every service answers SERVING; StackError naming any that exits or lags."""
    deadline = time.monotonic() + limit_seconds
    pending = dict(stack.services)
    states: dict[str, str] = {}
    while pending:
        for name, entry in pending.items():
            # A child of ours is asked through its Popen only: is_ours would reap it and
            # take its exit code away.
            child = stack.children.get(name)
            code = child.poll() if child else None
            if code is not None or (child is None and not is_ours(entry.process)):
                how = f" with code {code}" if code is not None else ""
                raise StackError(f"{name} exited{how} during start-up; last lines of "
                                 f"{entry.process.log}:\n{tail(entry.process.log)}")
        checks = await asyncio.gather(*(health.check(e.address) for e in pending.values()))
        states.update(zip(pending, checks, strict=True))
        pending = {n: e for n, e in pending.items() if states[n] != health.SERVING}
        if pending and time.monotonic() > deadline:
            lagging = ", ".join(f"{n} ({states[n]})" for n in pending)
            raise StackError(f"not SERVING after {limit_seconds:.0f} s: {lagging}; see the logs in "
                             f"{stack.state_dir / 'logs'}")
        if pending:
            await asyncio.sleep(0.1)


def _stop(stack: Stack, grace: float, say: Say) -> None:
    services = [s.process for s in stack.services.values()]
    stopped = stop_all(services, grace=grace + 5.0)
    for name in stack.services:
        say(f"{name}: {stopped[name]}")
    if stack.sim is not None and stack.sim.process is not None:
        say(f"simulator: {stop_all([stack.sim.process], grace=5.0)['sim']}")
    stopped = stop_infra(stack.infra)
    for kind in stack.infra:
        if kind in stopped:
            say(f"embedded {kind}: {stopped[kind]}")
    for kind, entry in stack.infra.items():
        if not entry.embedded:
            say(f"{kind}: left running (tokenrt did not start it)")


def down(settings: Settings, say: Say = print) -> bool:
    """Stop exactly what `up` started, then remove stack.json. False when nothing was up."""
    state = settings.state_path
    with state_lock(state):
        stack = Stack.load(state)
        if stack is None:
            say(f"nothing to stop: no {STATE_FILE} in {state}")
            return False
        _stop(stack, settings.shutdown_grace_seconds, say)
        stack.remove()
    return True


async def run_foreground(settings: Settings, stack: Stack, say: Say = print) -> None:
    """Stay until Ctrl-C or SIGTERM (then stop everything), or until `tokenrt down` ran."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reported: set[str] = set()
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except TimeoutError:
                pass
            if not stack.path.exists():
                say("stack.json is gone (tokenrt down ran); leaving")
                return
            procs = {n: e.process for n, e in stack.services.items()}
            if stack.sim is not None and stack.sim.process is not None:
                procs["simulator"] = stack.sim.process
            for name, proc in procs.items():
                if name not in reported and not is_ours(proc):
                    reported.add(name)
                    say(f"tokenrt: {name} exited; last lines of {proc.log}:\n"
                        f"{tail(proc.log, 10)}")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    say("stopping")
    down(settings, say)


async def status(settings: Settings) -> dict[str, Any]:
    """Health of the six services and whether nats/postgres/redis answer (see README)."""
    stack = Stack.load(settings.state_path)
    sim_url = settings.router_sim_base_url
    states, probes, sim_answers = await asyncio.gather(
        health.check_all(settings), probe_all(infra_urls(settings),
                                              settings.dependency_timeout_seconds),
        simulator.answers(sim_url, settings.dependency_timeout_seconds))
    services: dict[str, Any] = {}
    for name in SERVICES:
        entry = stack.services.get(name) if stack else None
        pid = entry.process.pid if entry and is_ours(entry.process) else None
        services[name] = {"address": settings.endpoint(name).address, "health": states[name],
                          "pid": pid}
    infra: dict[str, Any] = {}
    for kind in INFRA:
        mine = stack.infra.get(kind) if stack else None
        embedded = bool(mine and mine.embedded and mine.process and is_ours(mine.process))
        infra[kind] = {"url": probes[kind].url, "answers": probes[kind].answers,
                       "embedded": embedded}
    sim_proc = stack.sim.process if stack and stack.sim else None
    sim_pid = sim_proc.pid if sim_proc is not None and is_ours(sim_proc) else None
    sim = {"url": sim_url, "answers": sim_answers, "started": sim_pid is not None,
           "pid": sim_pid}
    http = settings.router_http_addr
    return {"services": services, "infra": infra, "sim": sim,
            "openai_base_url": f"http://{http}/v1" if http else None}
