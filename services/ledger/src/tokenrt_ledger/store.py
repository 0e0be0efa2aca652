"""Postgres side of the ledger: idempotent batch ingest with rollups, and the queries.

The only module that talks SQL. Table names are qualified with the configured schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from tokenrt_ledger.core import (
    EVENT_COLUMNS,
    GRAINS,
    ROLLUP_INPUTS,
    ROLLUP_KEYS,
    ROLLUP_MEASURES,
    Row,
    month_start,
    months_of,
    next_month,
    segments,
)
from tokenrt_ledger.migrate import ident, migrate

RETRIES = 5
INGEST_WORK_MEM = "64MB"  # for the ingest transaction only (SET LOCAL)
USER_GRAINS = ("hour", "day")  # grains that also have a rollup without the session
DIMENSIONS = ("org_id", "project_id", "user_id", "session_id", "model", "provider")


@dataclass
class EventFilter:
    """Which events a query covers; empty fields do not filter."""

    start: datetime
    end: datetime
    org_id: str = ""
    project_id: str = ""
    user_id: str = ""
    session_id: str = ""
    api_key_id: str = ""
    models: list[str] = field(default_factory=list)
    providers: list[int] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def needs_raw_events(self) -> bool:
        """Rollups carry neither api keys nor per-status splits of every measure."""
        return bool(self.api_key_id or self.statuses)


@dataclass(frozen=True)
class UsageQuery:
    filter: EventFilter
    group_by: Sequence[str] = ()  # names from DIMENSIONS
    grain: str = ""  # "", "minute", "hour" or "day"
    time_zone: str = "UTC"
    order: str = ""  # "", "cost", "tokens", "requests"
    limit: int = 100
    offset: int = 0


class _Params:
    """Positional SQL parameters ($1, $2...) collected while building a statement."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


class LedgerStore:
    def __init__(self, pool: asyncpg.Pool, schema: str,
                 log: structlog.stdlib.BoundLogger) -> None:
        self.pool = pool
        self.schema = schema
        self.s = ident(schema)
        self.log = log
        self._staging_name = f"ledger_staging_{schema}"
        self._staging = ident(self._staging_name)
        self._partitions: set[datetime] = set()
        self._ingest_sql = self._build_ingest_sql()

    # --- schema ---

    async def migrate(self) -> list[int]:
        async with self.pool.acquire() as conn:
            return await migrate(conn, self.schema, self.log)

    async def ensure_partitions(self, months: set[datetime]) -> None:
        """Create the monthly partitions of usage_events that do not exist yet."""
        missing = sorted(months - self._partitions)
        if not missing:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            # Serialise with other replicas creating the same partition.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                               f"tokenrt.ledger.partition.{self.schema}")
            for m in missing:
                name = ident(f"usage_events_{m:%Y_%m}")
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.s}.{name} PARTITION OF "
                    f"{self.s}.usage_events FOR VALUES FROM ('{m.isoformat()}') "
                    f"TO ('{next_month(m).isoformat()}')")
        self._partitions.update(missing)

    async def ensure_partitions_ahead(self, now: datetime, months: int = 3) -> None:
        wanted, m = set(), month_start(now)
        for _ in range(months):
            wanted.add(m)
            m = next_month(m)
        await self.ensure_partitions(wanted)

    # --- ingest ---

    def _build_ingest_sql(self) -> str:
        """One statement: new event ids, their events, and every rollup.

        The inserted events are aggregated once, by minute (`agg`); the minute rollup takes
        those rows as they are and the hour and day rollups (with and without the session)
        sum them again. With a backlog, a batch of 10,000 events of the same few minutes
        becomes a few thousand rollup rows, and each grain's upsert touches each of its
        rows once. Rollup rows are locked in primary-key order (ORDER BY) so that
        concurrent writers cannot deadlock on them.
        """
        s = self.s
        cols = ", ".join(EVENT_COLUMNS)
        keys = ", ".join(ROLLUP_KEYS)
        dims = ", ".join(ROLLUP_KEYS[1:])
        measures = ", ".join(ROLLUP_MEASURES)
        exprs = ", ".join(f"{e} AS {m}" for m, e in ROLLUP_MEASURES.items())
        sums = ", ".join(f"sum({m})::bigint" for m in ROLLUP_MEASURES)
        parts = [
            f"""WITH fresh AS (
                INSERT INTO {s}.event_ids (event_id, occurred_at)
                SELECT DISTINCT ON (event_id) event_id, occurred_at FROM {self._staging}
                ORDER BY event_id
                ON CONFLICT DO NOTHING RETURNING event_id
            ), ins AS (
                INSERT INTO {s}.usage_events ({cols}, recorded_at)
                SELECT DISTINCT ON (st.event_id) {", ".join("st." + c for c in EVENT_COLUMNS)},
                       clock_timestamp()
                FROM {self._staging} st JOIN fresh USING (event_id)
                ORDER BY st.event_id
                RETURNING {", ".join(ROLLUP_INPUTS)}
            ), agg AS MATERIALIZED (
                SELECT date_trunc('minute', occurred_at, 'UTC') AS bucket_start, {dims}, {exprs}
                FROM ins GROUP BY 1, 2, 3, 4, 5, 6, 7
            )"""]
        for grain in GRAINS:
            table = f"rollup_{grain}"
            updates = ", ".join(f"{m} = {table}.{m} + EXCLUDED.{m}" for m in ROLLUP_MEASURES)
            source = ("SELECT * FROM agg" if grain == "minute" else
                      f"SELECT date_trunc('{grain}', bucket_start, 'UTC'), {dims}, {sums} "
                      "FROM agg GROUP BY 1, 2, 3, 4, 5, 6, 7")
            parts.append(f""", r_{grain} AS (
                INSERT INTO {s}.{table} AS {table} ({keys}, {measures})
                {source} ORDER BY 1, 2, 3, 4, 5, 6, 7
                ON CONFLICT ({keys}) DO UPDATE SET {updates}
            )""")
        user_keys = ", ".join(k for k in ROLLUP_KEYS if k != "session_id")
        user_dims = ", ".join(k for k in ROLLUP_KEYS[1:] if k != "session_id")
        for grain in USER_GRAINS:
            table = f"rollup_{grain}_user"
            updates = ", ".join(f"{m} = {table}.{m} + EXCLUDED.{m}" for m in ROLLUP_MEASURES)
            parts.append(f""", u_{grain} AS (
                INSERT INTO {s}.{table} AS {table} ({user_keys}, {measures})
                SELECT date_trunc('{grain}', bucket_start, 'UTC'), {user_dims}, {sums}
                FROM agg GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
                ON CONFLICT ({user_keys}) DO UPDATE SET {updates}
            )""")
        parts.append(" SELECT count(*) FROM ins")
        return "".join(parts)

    async def ingest(self, rows: list[Row]) -> int:
        """Store a batch exactly once and roll up what was new; returns how many were new.

        One transaction: COPY into a temp staging table, insert the ids not seen before,
        insert those events, add them to the rollups. Retried on deadlock.
        """
        if not rows:
            return 0
        await self.ensure_partitions(months_of(rows))
        for attempt in range(1, RETRIES + 1):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    # Sorting a 10,000-event batch (with its payloads) needs ~5 MB: more than
                    # the default work_mem, so it would spill to disk.
                    await conn.execute(
                        f"SET LOCAL work_mem = '{INGEST_WORK_MEM}'; "
                        f"CREATE TEMP TABLE IF NOT EXISTS {self._staging} ON COMMIT DELETE ROWS "
                        f"AS SELECT {', '.join(EVENT_COLUMNS)} FROM {self.s}.usage_events "
                        "WITH NO DATA")
                    await conn.copy_records_to_table(self._staging_name, records=rows,
                                                     columns=EVENT_COLUMNS)
                    return int(await conn.fetchval(self._ingest_sql))
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
                if attempt == RETRIES:
                    raise
                self.log.warning("ledger.ingest_retry", attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    # --- queries ---

    def _where(self, f: EventFilter, p: _Params, *, raw: bool) -> list[str]:
        out = []
        for name in ("org_id", "project_id", "user_id", "session_id"):
            if getattr(f, name):
                out.append(f"{name} = {p.add(getattr(f, name))}")
        if f.models:
            out.append(f"model = ANY({p.add(f.models)}::text[])")
        if f.providers:
            out.append(f"provider = ANY({p.add(f.providers)}::smallint[])")
        if raw and f.api_key_id:
            out.append(f"api_key_id = {p.add(f.api_key_id)}")
        if raw and f.statuses:
            out.append(f"status = ANY({p.add(f.statuses)}::smallint[])")
        return out

    def _source(self, q: UsageQuery, p: _Params) -> str:
        """A subquery of (t, dimensions..., measures...) rows covering the filter."""
        f = q.filter
        dims = ", ".join(DIMENSIONS)
        if f.needs_raw_events:
            conds = self._where(f, p, raw=True)
            conds += [f"occurred_at >= {p.add(f.start)}", f"occurred_at < {p.add(f.end)}"]
            exprs = ", ".join(f"{e} AS {m}" for m, e in ROLLUP_MEASURES.items())
            return (f"SELECT date_trunc('minute', occurred_at, 'UTC') AS t, {dims}, {exprs} "
                    f"FROM {self.s}.usage_events WHERE {' AND '.join(conds)} "
                    "GROUP BY 1, 2, 3, 4, 5, 6, 7")
        coarsest = "day"
        if q.grain in ("minute", "hour"):
            coarsest = q.grain
        elif q.grain == "day" and q.time_zone != "UTC":
            coarsest = "hour"
        measures = ", ".join(ROLLUP_MEASURES)
        # Without session in the question, hours and days come from the smaller rollups.
        sessionless = "session_id" not in q.group_by and not f.session_id
        selects = []
        for seg in segments(f.start, f.end, coarsest):
            conds = self._where(f, p, raw=False)
            conds += [f"bucket_start >= {p.add(seg.start)}", f"bucket_start < {p.add(seg.end)}"]
            table, cols = f"rollup_{seg.grain}", dims
            if sessionless and seg.grain in USER_GRAINS:
                table = f"rollup_{seg.grain}_user"
                cols = dims.replace("session_id", "''::text AS session_id")
            selects.append(f"SELECT bucket_start AS t, {cols}, {measures} "
                           f"FROM {self.s}.{table} WHERE {' AND '.join(conds)}")
        if not selects:
            return (f"SELECT NULL::timestamptz AS t, {dims}, {measures} "
                    f"FROM {self.s}.rollup_day WHERE false")
        return " UNION ALL ".join(selects)

    async def query_usage(self, q: UsageQuery) -> tuple[list[asyncpg.Record], asyncpg.Record]:
        """(rows for this page, totals over every matching event)."""
        p = _Params()
        src = self._source(q, p)
        sums = ", ".join(f"coalesce(sum({m}), 0)::bigint AS {m}" for m in ROLLUP_MEASURES)
        select, group = [], []
        if q.grain:
            tz = p.add(q.time_zone)
            select.append(f"date_trunc('{q.grain}', t, {tz}) AS bucket_start")
            group.append("bucket_start")
        for d in q.group_by:
            select.append(d)
            group.append(d)
        # An expression in ORDER BY cannot name output columns: "tokens" sums the inputs.
        order = {"cost": "cost_nusd DESC",
                 "tokens": "coalesce(sum(input_tokens) + sum(output_tokens), 0) DESC",
                 "requests": "requests DESC"}.get(q.order, "")
        order_by = ", ".join(x for x in (order, *group) if x) or "1"
        page_sql = (f"SELECT {', '.join([*select, sums])} FROM ({src}) x "
                    + (f"GROUP BY {', '.join(group)} " if group else "")
                    + f"ORDER BY {order_by} LIMIT {int(q.limit)} OFFSET {int(q.offset)}")
        p_total = _Params()
        total_sql = f"SELECT {sums} FROM ({self._source(q, p_total)}) x"
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(page_sql, *p.values)
            total = await conn.fetchrow(total_sql, *p_total.values)
        return rows, total

    async def get_event(self, event_id: str) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            when = await conn.fetchval(
                f"SELECT occurred_at FROM {self.s}.event_ids WHERE event_id = $1", event_id)
            if when is None:
                return None
            return await conn.fetchrow(
                f"SELECT payload, recorded_at FROM {self.s}.usage_events "
                "WHERE occurred_at = $1 AND event_id = $2", when, event_id)

    def _events_sql(self, f: EventFilter, p: _Params, *, newest_first: bool,
                    after: tuple[datetime, str] | None) -> str:
        conds = self._where(f, p, raw=True)
        conds += [f"occurred_at >= {p.add(f.start)}", f"occurred_at < {p.add(f.end)}"]
        if after is not None:
            op = "<" if newest_first else ">"
            conds.append(f"(occurred_at, event_id) {op} ({p.add(after[0])}, {p.add(after[1])})")
        direction = "DESC" if newest_first else "ASC"
        return (f"SELECT event_id, occurred_at, recorded_at, payload FROM {self.s}.usage_events "
                f"WHERE {' AND '.join(conds)} "
                f"ORDER BY occurred_at {direction}, event_id {direction}")

    async def list_events(self, f: EventFilter, limit: int,
                          after: tuple[datetime, str] | None) -> list[asyncpg.Record]:
        p = _Params()
        sql = self._events_sql(f, p, newest_first=True, after=after) + f" LIMIT {int(limit)}"
        async with self.pool.acquire() as conn:
            return await conn.fetch(sql, *p.values)

    async def export_events(self, f: EventFilter,
                            chunk: int) -> AsyncIterator[list[asyncpg.Record]]:
        """Matching events oldest first, `chunk` at a time, through a server-side cursor."""
        p = _Params()
        sql = self._events_sql(f, p, newest_first=False, after=None)
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            batch: list[asyncpg.Record] = []
            async for record in conn.cursor(sql, *p.values, prefetch=chunk):
                batch.append(record)
                if len(batch) >= chunk:
                    yield batch
                    batch = []
            if batch:
                yield batch

    def _sum_sql(self, f: EventFilter, exclude_prefix: str = "",
                 exclude_ids: Sequence[str] = ()) -> tuple[str, list[Any]]:
        p = _Params()
        conds = self._where(f, p, raw=True)
        start, end = p.add(f.start), p.add(f.end)
        # occurred_at >= budget_reserved_at always: the bound lets Postgres skip partitions.
        conds += ["budget_reservation_id <> ''", f"budget_reserved_at >= {start}",
                  f"budget_reserved_at < {end}", f"occurred_at >= {start}"]
        if exclude_prefix:
            conds.append(f"NOT starts_with(budget_reservation_id, {p.add(exclude_prefix)})")
        if exclude_ids:
            conds.append(f"budget_reservation_id <> ALL({p.add(list(exclude_ids))}::text[])")
        sql = ("SELECT coalesce(sum(input_tokens + output_tokens), 0)::bigint AS tokens, "
               "coalesce(sum(cost_nusd), 0)::bigint AS cost_nusd, count(*) AS requests "
               f"FROM {self.s}.usage_events WHERE {' AND '.join(conds)}")
        return sql, p.values

    async def sum_usage(self, f: EventFilter) -> asyncpg.Record:
        """Charged usage (events with a reservation) by budget_reserved_at in [start, end)."""
        sql, values = self._sum_sql(f)
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(sql, *values)

    async def sum_usage_snapshot(self, filters: Sequence[EventFilter], exclude_prefix: str,
                                 exclude_ids: Sequence[str]) -> list[asyncpg.Record]:
        """sum_usage of every filter from one snapshot (a repeatable-read transaction), so
        that the answers agree on which events exist; events whose reservation id starts
        with `exclude_prefix` or is in `exclude_ids` left out."""
        async with self.pool.acquire() as conn, conn.transaction(
                isolation="repeatable_read", readonly=True):
            out = []
            for f in filters:
                sql, values = self._sum_sql(f, exclude_prefix, exclude_ids)
                out.append(await conn.fetchrow(sql, *values))
            return out
