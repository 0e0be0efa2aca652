"""The ledger's schema migrations (files `migrations/NNNN_name.sql`), applied at start
through tokenrt_common.migrations (an advisory lock makes replicas take turns)."""

from __future__ import annotations

import asyncpg
import structlog

from tokenrt_common import migrations as shared
from tokenrt_common.migrations import Migration, ident

__all__ = ["Migration", "ident", "migrate", "migrations"]


def migrations() -> list[Migration]:
    """The packaged migrations, in version order."""
    return shared.migrations("tokenrt_ledger")


async def migrate(conn: asyncpg.Connection, schema: str,
                  log: structlog.stdlib.BoundLogger) -> list[int]:
    """Apply the migrations this schema lacks; return the versions applied now."""
    return await shared.migrate(conn, "tokenrt_ledger", schema, log)
