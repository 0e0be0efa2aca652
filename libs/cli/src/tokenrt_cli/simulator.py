"""The LLM simulator as part of a stack: `tokenrt up` starts `tokenrt sim` where the router
expects it (TOKENRT_ROUTER_SIM_BASE_URL), unless one already answers there.

Like the infrastructure: a simulator that answers is used as is and never stopped; on a
remote URL nothing is started; a local port held by something else is reported and left
alone (the stack still comes up, only `sim/` models cannot answer).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tokenrt_cli.embedded import port_is_free
from tokenrt_cli.probe import is_local
from tokenrt_cli.procs import ProcessRecord, is_ours, launch, tail

START_TIMEOUT = 30.0


class SimError(RuntimeError):
    """The simulator could not be started; the message says why."""


@dataclass(frozen=True)
class SimEntry:
    """The simulator a stack uses: `process` is set when this stack started it."""

    url: str  # the router's base URL, e.g. http://127.0.0.1:8099/v1
    process: ProcessRecord | None = None

    def to_json(self) -> dict[str, object]:
        return {"url": self.url, "process": self.process.to_json() if self.process else None}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SimEntry:
        proc = data.get("process")
        return cls(str(data["url"]),
                   ProcessRecord.from_json(proc) if isinstance(proc, Mapping) else None)


def host_port(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "127.0.0.1", parts.port or default


async def answers(base_url: str, timeout_seconds: float = 1.0) -> bool:
    """True when `GET /health` at the URL's host:port says the simulator is ok."""
    host, port = host_port(base_url)
    try:
        async with asyncio.timeout(timeout_seconds):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                await writer.drain()
                raw = await reader.read(4096)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[0].startswith(b"HTTP/") or status[1] != b"200":
        return False
    try:
        return bool(json.loads(body).get("status") == "ok")
    except (ValueError, AttributeError):
        return False


def command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "tokenrt_router.sim.cli", "sim", "--host", host,
            "--port", str(port)]


async def ensure_sim(base_url: str, logs: Path, env: Mapping[str, str]) -> SimEntry | None:
    """The simulator the router will call: one that answers, or one started now (not yet
    waited for: see `wait_answering`). None when nothing can be started there."""
    if not base_url:
        return None
    if await answers(base_url):
        return SimEntry(base_url)
    host, port = host_port(base_url)
    if not is_local(host):
        return None
    if not port_is_free(host, port):
        raise SimError(f"TOKENRT_ROUTER_SIM_BASE_URL: {host}:{port} is in use by something "
                       "that is not the simulator; no simulator started (sim/ models will "
                       "fail until one answers there)")
    proc, _child = launch("sim", "sim", command(host, port), logs / "sim.log", env=env,
                          port=port)
    return SimEntry(base_url, proc)


async def wait_answering(entry: SimEntry, limit_seconds: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + limit_seconds
    while not await answers(entry.url):
        proc = entry.process
        if proc is not None and not is_ours(proc):
            raise SimError(f"the simulator exited during start-up; last lines of {proc.log}:\n"
                           f"{tail(proc.log)}")
        if time.monotonic() > deadline:
            raise SimError(f"the simulator did not answer at {entry.url} within "
                           f"{limit_seconds:.0f} s")
        await asyncio.sleep(0.1)
