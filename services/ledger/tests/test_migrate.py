"""Migrations: several replicas starting at once apply each version exactly once."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import structlog

from tokenrt_ledger.migrate import migrate, migrations

from .conftest import PG_DSN


async def test_concurrent_starts_apply_each_migration_once(pg: asyncpg.Connection) -> None:
    schema = f"ledger_m{uuid.uuid4().hex[:10]}"
    conns = [await asyncpg.connect(PG_DSN) for _ in range(4)]
    try:
        log = structlog.get_logger()
        applied = await asyncio.gather(*(migrate(c, schema, log) for c in conns))
        want = [m.version for m in migrations()]
        assert sorted(v for a in applied for v in a) == want  # once in total
        rows = await pg.fetch(f'SELECT version FROM "{schema}".schema_migrations ORDER BY 1')
        assert [r[0] for r in rows] == want
        assert await migrate(conns[0], schema, log) == []  # a later start has nothing to do
        assert await pg.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'rollup_%'",
            schema) == 5  # minute, hour, day, and hour and day without session
    finally:
        for c in conns:
            await c.close()
        await pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
