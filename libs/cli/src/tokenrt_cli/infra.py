"""NATS, Postgres and Redis for a stack: use the configured ones, or start embedded ones.

For each kind: when the configured URL answers, it is used as is. When it does not and its
host is this machine, an embedded server is started on that very host:port, with its data
in the state folder. A remote URL that does not answer is an error naming the URL.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tokenrt_cli import embedded
from tokenrt_cli.probe import (
    ENV_KEYS,
    INFRA,
    Probe,
    host_port,
    is_local,
    mask_url,
    probe,
    probe_all,
)
from tokenrt_cli.procs import ProcessRecord, is_ours, stop_all, tail
from tokenrt_common.settings import Settings

START_TIMEOUT = 60.0


class InfraError(RuntimeError):
    """NATS, Postgres or Redis cannot be had; the message names the setting and URL."""


@dataclass(frozen=True)
class InfraEntry:
    """One of nats/postgres/redis as a stack uses it."""

    kind: str
    url: str  # masked
    embedded: bool
    process: ProcessRecord | None = None


def infra_urls(settings: Settings) -> dict[str, str]:
    return {"nats": settings.nats_url, "postgres": settings.postgres_dsn,
            "redis": settings.redis_url}


def postgres_user(dsn: str) -> str:
    """The role a client connects as: the DSN's, else PGUSER, else the login name (as libpq)."""
    return urlsplit(dsn).username or os.environ.get("PGUSER") or getpass.getuser()


async def ensure_infra(settings: Settings, state: Path,
                       on_start: Callable[[InfraEntry], None] = lambda entry: None,
                       say: Callable[[str], None] = print) -> dict[str, InfraEntry]:
    """Make NATS, Postgres and Redis answer at the configured URLs.

    `on_start` hears about each embedded server as soon as its process exists, so the
    caller can record it before anything else can fail. On failure, whatever this call
    started is stopped again before `InfraError` is raised.
    """
    urls = infra_urls(settings)
    probe_seconds = settings.dependency_timeout_seconds
    probes = await probe_all(urls, probe_seconds)
    entries: dict[str, InfraEntry] = {}
    to_start: list[str] = []
    for kind in INFRA:
        found = probes[kind]
        if found.answers:
            _check_usable(found)
            entries[kind] = InfraEntry(kind, found.url, embedded=False)
            continue
        host, port = host_port(kind, urls[kind])
        if not is_local(host):
            raise InfraError(f"{ENV_KEYS[kind]}: {found.url} does not answer ({found.detail}); "
                             "it is not on this machine, so no embedded server is started there")
        if not embedded.port_is_free(host, port):
            raise InfraError(f"{ENV_KEYS[kind]}: {host}:{port} is in use by something that does "
                             f"not answer as {kind} ({found.detail})")
        to_start.append(kind)

    started: list[InfraEntry] = []

    def record(entry: InfraEntry) -> None:
        started.append(entry)
        on_start(entry)

    try:
        if to_start:
            say(f"starting embedded {', '.join(to_start)} in {state}")
        results = await asyncio.gather(
            *(_start_one(kind, urls[kind], state, record) for kind in to_start),
            return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        entries.update({e.kind: e for e in started})
        if probes["postgres"].missing_database or "postgres" in to_start:
            await create_database(settings.postgres_dsn, probe_seconds)
    except BaseException:
        stop_infra(started)
        raise
    return {kind: entries[kind] for kind in INFRA}


def _check_usable(found: Probe) -> None:
    if found.kind == "nats" and "JetStream not enabled" in found.detail:
        raise InfraError(f"{ENV_KEYS['nats']}: {found.url} answers but has JetStream off "
                         "(start nats-server with -js)")
    if found.kind == "postgres" and found.detail and not found.missing_database \
            and not found.detail.startswith("PostgreSQL"):
        raise InfraError(f"{ENV_KEYS['postgres']}: {found.url}: {found.detail}")
    if found.kind == "redis" and found.detail != "PONG":
        raise InfraError(f"{ENV_KEYS['redis']}: {found.url}: {found.detail}")


async def _start_one(kind: str, url: str, state: Path,
                     record: Callable[[InfraEntry], None]) -> None:
    host, port = host_port(kind, url)
    parts = urlsplit(url)
    try:
        if kind == "nats":
            proc = embedded.start_nats(host, port, state)
        elif kind == "redis":
            proc = embedded.start_valkey(host, port, state, parts.username, parts.password)
        else:
            proc = await asyncio.to_thread(embedded.start_postgres, host, port,
                                           postgres_user(url), state)
    except (embedded.EmbeddedError, OSError) as exc:  # OSError: ProcessLookupError included
        raise InfraError(f"embedded {kind} could not start: {exc}") from None
    record(InfraEntry(kind, mask_url(url), embedded=True, process=proc))
    await wait_answering(kind, url, proc, START_TIMEOUT)


async def wait_answering(kind: str, url: str, proc: ProcessRecord, limit_seconds: float) -> None:
    """Until the server answers; an error with its log's tail if it dies or stays silent."""
    deadline = time.monotonic() + limit_seconds
    while True:
        found = await probe(kind, url, 1.0)
        if found.answers:
            return
        if not is_ours(proc):
            raise InfraError(f"embedded {kind} exited during start-up; last lines of "
                             f"{proc.log}:\n{tail(proc.log)}")
        if time.monotonic() > deadline:
            raise InfraError(f"embedded {kind} did not answer at {found.url} within "
                             f"{limit_seconds:.0f} s ({found.detail}); see {proc.log}")
        await asyncio.sleep(0.05)


async def create_database(dsn: str, timeout_seconds: float) -> bool:
    """Create the DSN's database through the `postgres` maintenance database, if missing."""
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/") or postgres_user(dsn)
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(maintenance, timeout=timeout_seconds)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False
    finally:
        await conn.close(timeout=timeout_seconds)
    return True


def stop_infra(entries: list[InfraEntry] | dict[str, InfraEntry]) -> dict[str, str]:
    """Stop the embedded servers among `entries` (never one that was already running)."""
    items = list(entries.values()) if isinstance(entries, dict) else list(entries)
    mine = [e.process for e in items if e.embedded and e.process is not None]
    outcome: dict[str, str] = {}
    others = [p for p in mine if p.kind != "postgres"]
    if others:
        outcome.update(stop_all(others, grace=10.0))
    for proc in mine:
        if proc.kind == "postgres":
            outcome[proc.name] = embedded.stop_postgres(proc)
    return outcome
