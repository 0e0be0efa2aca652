"""The budget's I/O: counters and reservations in Redis (Lua), limits in Postgres, and
the ledger's SumUsage as the source of counter rebuilds.

Redis keys, all under `<prefix>:{<tag>}` where the tag is a hash of the organization, so
that every key a chain touches lives in one cluster slot:
  ready           set once the organization's counters are rebuilt (absent = empty Redis);
                  its value is the epoch: 8 hex digits, new at every rebuild, that every
                  reservation id issued since carries
  catchup         the catch-up window after a rebuild (hash: epoch, since, from, until,
                  ver); gone when the window closes
  counted         reservations issued before the rebuild and committed since (set)
  ver             limits version, bumped by every limit change (replicas reload on change)
  rexp            sorted set of held reservation ids by expiry (ms)
  r:<id>          one reservation (see lua/common.lua); a tombstone once settled
  idem:<key>      Reserve idempotency keys
  c:<limit>:<gen>:<period>  one limit's counter in one period: used, reserved, alerted,
                  rolling buckets b<index>, and after a rebuild the catch-up bases
                  L<field> and Lv
Not hash-tagged: `orgs` (tags with reservations, for the sweeper) and `catchups`
(organization ids in a catch-up window, by when their next pass is due).
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

import asyncpg
import grpc
import redis.asyncio as aioredis
import structlog

from tokenrt.v1 import common_pb2, ledger_pb2, ledger_pb2_grpc
from tokenrt_budget import core
from tokenrt_budget.core import Limit, Scope
from tokenrt_common import migrations
from tokenrt_common.redis_pipelined import PipelinedConnection, Scripts

SCRIPTS = ("reserve", "settle", "charge", "read", "sweep", "alert", "set_used", "rebuild",
           "catchup")
# Tombstones of settled reservations answer retries (ALREADY_SETTLED) this long.
TOMBSTONE_SECONDS = 86400
# Counters of a finished period are kept this long after it ends (for late commits).
COUNTER_GRACE_SECONDS = 86400


@lru_cache(maxsize=65536)
def org_tag(org_id: str) -> str:
    return hashlib.sha1(org_id.encode()).hexdigest()[:12]


def new_epoch() -> str:
    return uuid.uuid4().hex[:8]


def _is_epoch(epoch: str) -> bool:
    return len(epoch) == 8 and all(c in "0123456789abcdef" for c in epoch)


def new_reservation_id(org_id: str, epoch: str = "") -> str:
    """`<org tag>.<32 hex>`; the first 8 hex digits are the epoch of the counters the
    reservation was made in (when the ready marker holds one)."""
    rand = os.urandom(16).hex()
    if _is_epoch(epoch):
        return f"{org_tag(org_id)}.{epoch}{rand[:24]}"
    return f"{org_tag(org_id)}.{rand}"


def reservation_prefix(org_id: str, epoch: str) -> str:
    """What every reservation id issued in this epoch starts with."""
    return f"{org_tag(org_id)}.{epoch}"


_RESERVATION_ID = re.compile(r"([0-9a-f]{12})\.[0-9a-f]{32}")


def tag_of_reservation(reservation_id: str) -> str | None:
    found = _RESERVATION_ID.fullmatch(reservation_id)
    return found.group(1) if found else None


class LimitsChanged(Exception):
    """A limit was reset or changed while a rebuild was summing the ledger."""


@dataclass(frozen=True)
class Keys:
    prefix: str

    def base(self, tag: str) -> str:
        return f"{self.prefix}:{{{tag}}}"

    def ready(self, tag: str) -> str:
        return f"{self.base(tag)}:ready"

    def ver(self, tag: str) -> str:
        return f"{self.base(tag)}:ver"

    def rexp(self, tag: str) -> str:
        return f"{self.base(tag)}:rexp"

    def res_prefix(self, tag: str) -> str:
        return f"{self.base(tag)}:r:"

    def res(self, tag: str, rid: str) -> str:
        return self.res_prefix(tag) + rid

    def idem(self, tag: str, key: str) -> str:
        return f"{self.base(tag)}:idem:{hashlib.sha256(key.encode()).hexdigest()[:32]}"

    def rebuilding(self, tag: str) -> str:
        return f"{self.base(tag)}:rebuilding"

    def catchup(self, tag: str) -> str:
        return f"{self.base(tag)}:catchup"

    def counted(self, tag: str) -> str:
        return f"{self.base(tag)}:counted"

    def catching(self, tag: str) -> str:
        return f"{self.base(tag)}:catching"

    def counter(self, lim: Limit, win: core.Window) -> str:
        base = self.base(org_tag(lim.scope.org_id))
        return f"{base}:c:{lim.limit_id}:{generation(lim)}:{win.key}"

    @property
    def orgs(self) -> str:
        """Tags of organizations with reservations (the sweeper's list; not hash-tagged)."""
        return f"{self.prefix}:orgs"

    @property
    def catchups(self) -> str:
        """Organization ids in a catch-up window, by when their next pass is due (ms)."""
        return f"{self.prefix}:catchups"


def generation(lim: Limit) -> str:
    """Changes when a limit is changed in a way that must start its counters afresh."""
    ident = (f"{lim.scope.text}|{lim.metric}|{lim.period}|{lim.rolling_window_seconds}|"
             f"{lim.time_zone}")
    return hashlib.sha1(ident.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Slot:
    """One limit of a request: its current period, counter key and what it needs."""

    limit: Limit
    window: core.Window
    key: str
    need: int = 0
    blocking: bool = True
    # spec_of(limit, window), when the caller cached it.
    spec: str = ""

    @property
    def bucket(self) -> tuple[int, int]:
        """(bucket ms, bucket count); (0, 0) for calendar and total periods."""
        if self.limit.period != common_pb2.LIMIT_PERIOD_ROLLING:
            return 0, 0
        size, count = core.rolling_buckets(self.limit.rolling_window_seconds)
        return size * 1000, count

    def ttl_seconds(self, now: datetime) -> int:
        if self.window.end is None or self.limit.period == common_pb2.LIMIT_PERIOD_ROLLING:
            return 0
        return int((self.window.end - now).total_seconds()) + COUNTER_GRACE_SECONDS


def spec_of(lim: Limit, win: core.Window) -> str:
    """What reserve.lua needs of a limit besides the request's amount: `limit metric
    bucket_ms buckets expire_at limit_id` (expire_at: when the counter may go, 0 = never)."""
    bucket_ms, count = 0, 0
    if lim.period == common_pb2.LIMIT_PERIOD_ROLLING:
        size, count = core.rolling_buckets(lim.rolling_window_seconds)
        bucket_ms = size * 1000
    expire_at = 0
    if win.end is not None and bucket_ms == 0:
        expire_at = int(win.end.timestamp()) + COUNTER_GRACE_SECONDS
    return f"{lim.limit} {lim.metric} {bucket_ms} {count} {expire_at} {lim.limit_id}"


@dataclass(frozen=True)
class Counter:
    used: int
    reserved: int
    alerted: int
    retry_after_ms: int = 0


@dataclass(frozen=True)
class ReserveResult:
    status: str  # OK, REFUSED, EMPTY, STALE, IDEM
    counters: list[Counter]
    idem_fingerprint: str = ""
    idem_reservation_id: str = ""
    epoch: str = ""  # EPOCH: the counters' current epoch


@dataclass(frozen=True)
class CatchUp:
    """An organization's open catch-up window after a rebuild (times in ms)."""

    epoch: str
    since_ms: int
    from_ms: int
    until_ms: int
    version: int
    counted: list[str]
    next_ms: int = 0  # when the next pass is due


@dataclass(frozen=True)
class SettleResult:
    status: str  # DONE, MISSING, SETTLED (a retry, also of a late commit), EMPTY
    # (limit id, counter) per counter the reservation held.
    counters: list[tuple[str, Counter]]


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Counters:
    """Budget counters and reservations in Redis; every operation is one Lua call.

    The scripts go over a pipelined connection of their own (tokenrt_common.redis_pipelined,
    about 20 us of CPU a call against redis-py's 100-140): the calls made in one event-loop
    turn, e.g. a ReserveBatch's items, leave in one write and come back in one read. The
    plain commands (versions, locks, the catch-up window) use redis-py."""

    def __init__(self, redis: aioredis.Redis, prefix: str, conn: PipelinedConnection) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self._conn = conn
        self._scripts = Scripts(conn, {name: self._source(name) for name in SCRIPTS})

    @staticmethod
    def _source(name: str) -> str:
        lua = resources.files("tokenrt_budget").joinpath("lua")
        common = lua.joinpath("common.lua").read_text()
        return common + "\n" + lua.joinpath(f"{name}.lua").read_text()

    async def _call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Each script runs atomically on its own."""
        return await self._scripts.run(name, list(keys), *args)

    async def close(self) -> None:
        await self._conn.close()

    async def reserve(self, org_id: str, slots: Sequence[Slot], *, now: datetime, ttl_ms: int,
                      reservation_id: str, dry_run: bool, version: str, epoch: str,
                      idem_key: str = "", fingerprint: str = "") -> ReserveResult:
        tag = org_tag(org_id)
        k = self.keys
        ready, ver, rexp, res_prefix, no_idem = _reserve_keys(k, tag)
        keys = [ready, ver, rexp, res_prefix + reservation_id,
                k.idem(tag, idem_key) if idem_key else no_idem, *(s.key for s in slots)]
        args: list[Any] = [_ms(now), ttl_ms, reservation_id, int(dry_run), version,
                           int(bool(idem_key)), fingerprint, res_prefix, len(slots), epoch]
        for s in slots:
            args.append(f"{s.need} {int(s.blocking)} {s.spec or spec_of(s.limit, s.window)}")
        out = await self._call("reserve", keys, args)
        status = _text(out[0])
        if status == "IDEM":
            return ReserveResult(status, [], _text(out[1]), _text(out[2]))
        if status == "EPOCH":
            return ReserveResult(status, [], epoch=_text(out[1]))
        nums = [int(x) for x in out[1:]]
        return ReserveResult(status, [Counter(*nums[i:i + 4]) for i in range(0, len(nums), 4)])

    async def settle(self, reservation_id: str, *, commit: bool, tokens: int, cost_nusd: int,
                     now: datetime) -> SettleResult:
        tag = tag_of_reservation(reservation_id)
        if tag is None:
            return SettleResult("MISSING", [])
        k = self.keys
        out = await self._call("settle", [k.rexp(tag), k.res(tag, reservation_id),
                                          k.catchup(tag), k.counted(tag)],
                               ["commit" if commit else "release", tokens, cost_nusd, _ms(now),
                                TOMBSTONE_SECONDS, reservation_id])
        return SettleResult(_text(out[0]), _counters(out))

    async def charge(self, org_id: str, slots: Sequence[Slot], now: datetime,
                     reservation_id: str) -> SettleResult:
        tag = org_tag(org_id)
        k = self.keys
        args: list[Any] = [_ms(now), len(slots), reservation_id, TOMBSTONE_SECONDS]
        for s in slots:
            bucket_ms, count = s.bucket
            args += [s.need, bucket_ms, count, s.ttl_seconds(now), s.limit.limit_id]
        # The tombstone is kept under the chain's organization (the keys' cluster slot);
        # for a reservation id of that organization it is the key settle.lua reads.
        out = await self._call("charge", [k.ready(tag), k.catchup(tag), k.counted(tag),
                                          k.res(tag, reservation_id),
                                          *(s.key for s in slots)], args)
        return SettleResult(_text(out[0]), _counters(out))

    async def read(self, org_id: str, slots: Sequence[Slot], now: datetime) -> list[Counter]:
        tag = org_tag(org_id)
        args: list[Any] = [_ms(now), self.keys.res_prefix(tag)]
        for s in slots:
            args += list(s.bucket)
        out = await self._call("read", [self.keys.rexp(tag), *(s.key for s in slots)], args)
        nums = [int(x) for x in out]
        return [Counter(*nums[i:i + 3]) for i in range(0, len(nums), 3)]

    async def sweep(self, tag: str, now: datetime, most: int = 1000) -> int:
        return int(await self._call("sweep", [self.keys.rexp(tag)],
                                    [_ms(now), self.keys.res_prefix(tag), most]))

    async def mark_alert(self, slot: Slot, lvl: int) -> bool:
        return bool(await self._call("alert", [slot.key], [lvl]))

    async def set_used(self, slot: Slot, fields: dict[str, int], now: datetime,
                       restart_alerts: bool) -> None:
        args: list[Any] = [int(restart_alerts)]
        for name, value in fields.items():
            args += [name, value]
        args.append(slot.ttl_seconds(now))
        await self._call("set_used", [slot.key], args)

    async def version(self, org_id: str) -> str:
        value = await self.redis.get(self.keys.ver(org_tag(org_id)))
        return _text(value) if value is not None else "0"

    async def bump_version(self, org_id: str) -> None:
        await self.redis.incr(self.keys.ver(org_tag(org_id)))

    async def remember_org(self, org_id: str) -> None:
        await self.redis.sadd(self.keys.orgs, org_tag(org_id))

    async def org_tags(self) -> list[str]:
        return [_text(t) for t in await self.redis.smembers(self.keys.orgs)]

    async def try_lock_rebuild(self, org_id: str, owner: str, seconds: int = 30) -> bool:
        return bool(await self.redis.set(self.keys.rebuilding(org_tag(org_id)), owner,
                                         nx=True, ex=seconds))

    async def unlock_rebuild(self, org_id: str) -> None:
        await self.redis.delete(self.keys.rebuilding(org_tag(org_id)))

    async def install_rebuild(self, org_id: str, fields: Sequence[tuple[Slot, dict[str, int]]],
                              *, now: datetime, epoch: str, from_ms: int, until_ms: int,
                              force: bool, version: str | None = None) -> bool:
        """Write rebuilt counters, the new epoch and the catch-up window (until_ms 0 =
        none) in one script; False when another replica installed one meanwhile. With
        `version` (the limits version the sums were planned with), raises LimitsChanged
        instead of installing when it moved since."""
        tag = org_tag(org_id)
        k = self.keys
        args: list[Any] = [int(force), epoch, _ms(now), from_ms, until_ms, len(fields),
                           "" if version is None else version]
        for slot, values in fields:
            args += [slot.ttl_seconds(now), len(values)]
            for name, value in values.items():
                args += [name, value]
        done = await self._call("rebuild", [k.ready(tag), k.catchup(tag), k.counted(tag),
                                            k.ver(tag), *(slot.key for slot, _ in fields)],
                                args)
        if done == -1:
            raise LimitsChanged(f"the limits of {org_id} changed during the rebuild")
        if done and until_ms:
            await self.schedule_catchup(org_id, _ms(now))
        return bool(done)

    async def catchup_window(self, org_id: str) -> CatchUp | None:
        tag = org_tag(org_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.keys.catchup(tag))
        pipe.smembers(self.keys.counted(tag))
        head, counted = await pipe.execute()
        if not head:
            return None
        h = {_text(a): _text(b) for a, b in head.items()}
        return CatchUp(h["epoch"], int(h["since"]), int(h["from"]), int(h["until"]),
                       int(h["ver"]), sorted(_text(r) for r in counted), int(h.get("next", 0)))

    async def apply_catchup(self, org_id: str, window: CatchUp,
                            fields: Sequence[tuple[Slot, dict[str, int]]], now: datetime,
                            wait_ms: tuple[int, int] = (1000, 16000)) -> int | None:
        """Add the ledger's new sums and schedule the next pass between the shortest and
        longest wait (see lua/catchup.lua); None when the counted set changed since the
        window was read, or the window is another one."""
        args: list[Any] = [_ms(now), window.version, len(fields), window.epoch, *wait_ms]
        for slot, values in fields:
            args += [*slot.bucket, len(values)]
            for name, value in values.items():
                args += [name, value]
        out = await self._call("catchup", [self.keys.catchup(org_tag(org_id)),
                                           *(slot.key for slot, _ in fields)], args)
        if _text(out[0]) != "DONE":
            return None
        await self.schedule_catchup(org_id, int(out[2]))
        return int(out[1])

    async def schedule_catchup(self, org_id: str, at_ms: int) -> None:
        """When the organization's next catch-up pass is due (`due_catchups`)."""
        await self.redis.zadd(self.keys.catchups, {org_id: at_ms})

    async def due_catchups(self, now: datetime, most: int | None = None) -> list[str]:
        """Organizations in a catch-up window whose next pass is due, the longest-due
        first (at most `most` of them)."""
        due = self.redis.zrangebyscore(self.keys.catchups, "-inf", _ms(now),
                                       *(() if most is None else (0, most)))
        return [_text(o) for o in await due]

    async def forget_catchup(self, org_id: str) -> None:
        await self.redis.zrem(self.keys.catchups, org_id)

    async def try_lock_catchup(self, org_id: str, owner: str, ms: int) -> bool:
        return bool(await self.redis.set(self.keys.catching(org_tag(org_id)), owner, nx=True,
                                         px=ms))

    async def unlock_catchup(self, org_id: str) -> None:
        await self.redis.delete(self.keys.catching(org_tag(org_id)))

    async def epoch(self, org_id: str) -> str:
        value = await self.redis.get(self.keys.ready(org_tag(org_id)))
        return _text(value) if value is not None else ""

    async def is_ready(self, org_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.ready(org_tag(org_id))))

    async def delete_counter(self, slot: Slot) -> None:
        await self.redis.delete(slot.key)


@lru_cache(maxsize=65536)
def _reserve_keys(k: Keys, tag: str) -> tuple[str, str, str, str, str]:
    """An organization's keys in every Reserve: ready marker, limits version, expiry
    index, reservation key prefix, and the idempotency key of a request without one."""
    return k.ready(tag), k.ver(tag), k.rexp(tag), k.res_prefix(tag), k.idem(tag, "-")


def _counters(out: list[Any]) -> list[tuple[str, Counter]]:
    if len(out) < 2 or _text(out[0]) != "DONE":
        return []
    rows = out[2:]
    return [(_text(rows[i]), Counter(int(rows[i + 1]), int(rows[i + 2]), int(rows[i + 3])))
            for i in range(0, len(rows), 4)]


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


# ---------------------------------------------------------------------------------
# Postgres: limits
# ---------------------------------------------------------------------------------


async def migrate(conn: asyncpg.Connection, schema: str,
                  log: structlog.stdlib.BoundLogger) -> list[int]:
    """Apply missing `migrations/NNNN_*.sql` files once, replicas taking turns on a lock."""
    return await migrations.migrate(conn, "tokenrt_budget", schema, log)


_COLUMNS = ("limit_id, org_id, scope_kind, project_id, user_id, session_id, api_key_id, metric, "
            "period, rolling_window_seconds, time_zone, limit_value, warning_bp, critical_bp, "
            "action, fail_mode, name, reset_at, created_at, updated_at")


def _limit(r: asyncpg.Record) -> Limit:
    return Limit(limit_id=r["limit_id"],
                 scope=Scope(r["scope_kind"], r["org_id"], r["project_id"], r["user_id"],
                             r["session_id"], r["api_key_id"]),
                 metric=r["metric"], period=r["period"], limit=r["limit_value"],
                 action=r["action"], rolling_window_seconds=r["rolling_window_seconds"],
                 time_zone=r["time_zone"], warning_bp=r["warning_bp"],
                 critical_bp=r["critical_bp"], fail_mode=r["fail_mode"], name=r["name"],
                 reset_at=r["reset_at"], created_at=r["created_at"], updated_at=r["updated_at"])


class LimitStore:
    """Limits in Postgres schema `budget` (the source of truth)."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.t = f"{migrations.ident(schema)}.limits"

    async def get(self, limit_id: str) -> Limit | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM {self.t} WHERE limit_id = $1",
                                       limit_id)
        return _limit(row) if row else None

    async def of_org(self, org_id: str) -> list[Limit]:
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM {self.t} WHERE org_id = $1 "
                                     "ORDER BY limit_id", org_id)
        return [_limit(r) for r in rows]

    async def orgs(self) -> list[str]:
        return [r["org_id"] for r in await self.pool.fetch(
            f"SELECT DISTINCT org_id FROM {self.t} ORDER BY org_id")]

    async def page(self, org_id: str, scope: Scope | None, after: str,
                   size: int) -> list[Limit]:
        conds: list[str] = ["limit_id > $1"]
        args: list[object] = [after]
        if org_id:
            args.append(org_id)
            conds.append(f"org_id = ${len(args)}")
        if scope is not None:
            for col, value in (("scope_kind", scope.kind), ("org_id", scope.org_id),
                               ("project_id", scope.project_id), ("user_id", scope.user_id),
                               ("session_id", scope.session_id),
                               ("api_key_id", scope.api_key_id)):
                args.append(value)
                conds.append(f"{col} = ${len(args)}")
        args.append(size)
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM {self.t} WHERE "
                                     f"{' AND '.join(conds)} ORDER BY limit_id "
                                     f"LIMIT ${len(args)}", *args)
        return [_limit(r) for r in rows]

    async def upsert(self, lim: Limit, *, create: bool) -> Limit | None:
        """Insert (create) or replace; None when replacing a limit that does not exist."""
        s = lim.scope
        values = (lim.limit_id, s.org_id, s.kind, s.project_id, s.user_id, s.session_id,
                  s.api_key_id, lim.metric, lim.period, lim.rolling_window_seconds,
                  lim.time_zone, lim.limit, lim.warning_bp, lim.critical_bp, lim.action,
                  lim.fail_mode, lim.name)
        if create:
            row = await self.pool.fetchrow(
                f"INSERT INTO {self.t} ({_COLUMNS.rsplit(', reset_at', 1)[0]}) VALUES "
                "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) "
                f"RETURNING {_COLUMNS}", *values)
        else:
            row = await self.pool.fetchrow(
                f"UPDATE {self.t} SET org_id=$2, scope_kind=$3, project_id=$4, user_id=$5, "
                "session_id=$6, api_key_id=$7, metric=$8, period=$9, rolling_window_seconds=$10, "
                "time_zone=$11, limit_value=$12, warning_bp=$13, critical_bp=$14, action=$15, "
                f"fail_mode=$16, name=$17, updated_at=now() WHERE limit_id=$1 RETURNING {_COLUMNS}",
                *values)
        return _limit(row) if row else None

    async def delete(self, limit_id: str) -> Limit | None:
        row = await self.pool.fetchrow(f"DELETE FROM {self.t} WHERE limit_id = $1 "
                                       f"RETURNING {_COLUMNS}", limit_id)
        return _limit(row) if row else None

    async def mark_reset(self, limit_ids: list[str], at: datetime) -> None:
        await self.pool.execute(f"UPDATE {self.t} SET reset_at = $2 WHERE limit_id = ANY($1)",
                                limit_ids, at)


# ---------------------------------------------------------------------------------
# Rebuild source
# ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class UsageQuery:
    scope: Scope
    start: datetime
    end: datetime


@dataclass(frozen=True)
class UsageTotals:
    tokens: int
    cost_nusd: int
    requests: int

    def of(self, metric: int) -> int:
        return core.need_of(metric, self.tokens, self.cost_nusd, self.requests)


class UsageSource(Protocol):
    """Where counters are rebuilt from: charged usage per scope and time range, leaving
    out the reservations whose id starts with `exclude_prefix` or is in `exclude_ids`.
    Queries 2k and 2k+1 are answered from the same snapshot of the source."""

    # Whether usage can still arrive after a rebuild (worth a catch-up window).
    live: bool

    async def sum(self, queries: Sequence[UsageQuery], exclude_prefix: str = "",
                  exclude_ids: Sequence[str] = ()) -> tuple[list[UsageTotals], datetime]: ...


class NoUsage:
    """No history: rebuilt counters start at zero (TOKENRT_BUDGET_REBUILD_SOURCE=none)."""

    live = False

    async def sum(self, queries: Sequence[UsageQuery], exclude_prefix: str = "",
                  exclude_ids: Sequence[str] = ()) -> tuple[list[UsageTotals], datetime]:
        return [UsageTotals(0, 0, 0) for _ in queries], datetime.now(UTC)


class LedgerUsage:
    """The ledger's SumUsage (events by budget_reserved_at), in chunks of 1000 queries
    (each chunk one snapshot of the ledger), each distinct query of a chunk asked once."""

    CHUNK = 1000
    live = True

    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self._stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        self._timeout = timeout

    async def sum(self, queries: Sequence[UsageQuery], exclude_prefix: str = "",
                  exclude_ids: Sequence[str] = ()) -> tuple[list[UsageTotals], datetime]:
        totals: list[UsageTotals] = []
        watermark = datetime.now(UTC)
        for i in range(0, len(queries), self.CHUNK):
            request = ledger_pb2.SumUsageRequest(exclude_reservation_prefix=exclude_prefix,
                                                 exclude_reservation_ids=exclude_ids)
            chunk = queries[i:i + self.CHUNK]
            distinct = list(dict.fromkeys(chunk))
            for q in distinct:
                item = request.queries.add()
                s = q.scope
                item.scope.CopyFrom(common_pb2.Scope(
                    kind=s.kind, org_id=s.org_id, project_id=s.project_id, user_id=s.user_id,  # type: ignore[arg-type]
                    session_id=s.session_id, api_key_id=s.api_key_id))
                item.start_time.FromDatetime(q.start)
                item.end_time.FromDatetime(q.end)
            reply = await self._stub.SumUsage(request, timeout=self._timeout)
            answers = {q: UsageTotals(r.tokens, r.cost_nusd, r.requests)
                       for q, r in zip(distinct, reply.results, strict=True)}
            totals += [answers[q] for q in chunk]
            if reply.HasField("watermark"):
                watermark = min(watermark, reply.watermark.ToDatetime(UTC))
        return totals, watermark
