"""Versioned SQL migrations of a service's own schema, applied at start.

A service package ships `migrations/NNNN_name.sql`. Every replica runs `migrate` at
start; a Postgres advisory lock per (service, schema) makes them take turns, so each file
runs exactly once, in its own transaction, with search_path set to the schema. Applied
versions are recorded in `<schema>.schema_migrations`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(package: str) -> list[Migration]:
    """The migrations packaged in `<package>/migrations`, in version order."""
    found = []
    for entry in resources.files(package).joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {package}: {versions}")
    return found


def lock_key(service: str, schema: str) -> int:
    """The advisory-lock key of one service schema's migrations (a signed 64-bit integer)."""
    digest = hashlib.sha256(f"tokenrt.{service}.migrate.{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


async def migrate(conn: asyncpg.Connection, package: str, schema: str,
                  log: structlog.stdlib.BoundLogger) -> list[int]:
    """Apply the migrations of `package` that `schema` lacks; return the versions applied
    now. `package` is `tokenrt_<service>`."""
    service = package.removeprefix("tokenrt_")
    key = lock_key(service, schema)
    applied: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        s = ident(schema)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        rows = await conn.fetch(f"SELECT version FROM {s}.schema_migrations")
        done = {r["version"] for r in rows}
        for m in migrations(package):
            if m.version in done:
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {s}")
                await conn.execute(m.sql)
                await conn.execute(f"INSERT INTO {s}.schema_migrations (version, name) "
                                   "VALUES ($1, $2)", m.version, m.name)
            log.info(f"{service}.migrated", schema=schema, version=m.version, name=m.name)
            applied.append(m.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)
    return applied
