"""The budget's use cases, between the gRPC servicer and the stores: limits cached per
organization, reserve / settle / status / reset / rebuild, alerts and fail modes."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import redis.exceptions
import structlog

from tokenrt.v1 import budget_pb2, common_pb2
from tokenrt_budget import core
from tokenrt_budget.core import Check, InvalidInput, Limit, Scope
from tokenrt_budget.store import (
    Counter,
    Counters,
    LimitsChanged,
    LimitStore,
    Slot,
    UsageQuery,
    UsageSource,
    UsageTotals,
    new_epoch,
    new_reservation_id,
    org_tag,
    reservation_prefix,
    spec_of,
    tag_of_reservation,
)
from tokenrt_common.settings import Settings

K = common_pb2
# Most reservations committed since a rebuild that a catch-up pass leaves out by id.
MAX_COUNTED = 10_000
# Catch-up passes that add nothing come ever less often, up to this many intervals apart.
CATCHUP_BACKOFF = 16
# Failures that mean "Redis is away": the limits' fail modes decide.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
              redis.exceptions.BusyLoadingError, OSError, TimeoutError)


class Unavailable(Exception):
    """A dependency is unreachable or not ready; the message says which."""


class NotFound(Exception):
    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Conflict(Exception):
    """An idempotency key reused with other parameters."""


@dataclass(frozen=True)
class State:
    """One limit's state in an answer (LimitState without protobuf)."""

    check: Check
    level: int
    enforcement: int
    triggered: bool
    reset_at: datetime | None


@dataclass(frozen=True)
class Reserved:
    reservation_id: str
    decision: int
    retry_after_ms: int
    states: list[State]
    expires_at: datetime | None
    enforcement: int


@dataclass
class OrgLimits:
    version: str
    limits: list[Limit]
    loaded: float = field(default_factory=time.monotonic)
    by_id: dict[str, Limit] = field(default_factory=dict)
    by_scope: dict[Scope, list[Limit]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {lim.limit_id: lim for lim in self.limits}
        for lim in self.limits:
            self.by_scope.setdefault(lim.scope, []).append(lim)

    def on(self, scope: Scope) -> list[Limit]:
        return self.by_scope.get(scope, [])


@dataclass(frozen=True)
class ReserveIn:
    chain: tuple[Scope, ...]
    tokens: int
    cost_nusd: int
    requests: int
    ttl_seconds: int
    idempotency_key: str = ""
    degraded: bool = False
    dry_run: bool = False
    request_id: str = ""
    model: str = ""

    @property
    def fingerprint(self) -> str:
        text = repr((self.chain, self.tokens, self.cost_nusd, self.requests, self.degraded))
        return hashlib.sha1(text.encode()).hexdigest()


Alert = Callable[[Slot, State, int, int, str], None]


class Budget:
    def __init__(self, settings: Settings, counters: Callable[[], Counters | None],
                 limits: Callable[[], LimitStore | None], usage: UsageSource,
                 log: structlog.stdlib.BoundLogger, alert: Alert) -> None:
        self.settings = settings
        self._counters = counters
        self._limits = limits
        self.usage = usage
        self.log = log
        self.alert = alert
        self._cache: dict[str, OrgLimits] = {}
        self._loading: dict[str, asyncio.Future[OrgLimits]] = {}
        self._owner = uuid.uuid4().hex
        self._windows: dict[int, tuple[Limit, core.Window, str, str]] = {}
        self._orgs_by_tag: dict[str, str] = {}
        # Each organization's counters epoch as last seen (reservation ids carry it).
        self._epochs: dict[str, str] = {}

    # -- dependencies ------------------------------------------------------------------

    def counters(self) -> Counters:
        c = self._counters()
        if c is None:
            raise Unavailable("Redis is not connected yet")
        return c

    def limit_store(self) -> LimitStore:
        s = self._limits()
        if s is None:
            raise Unavailable("Postgres is not connected or the budget schema is not "
                              "migrated yet; retry shortly")
        return s

    # -- limits cache --------------------------------------------------------------------

    async def org_limits(self, org_id: str, *, fresh: bool = False) -> OrgLimits:
        cached = self._cache.get(org_id)
        age = self.settings.budget_limits_refresh_seconds
        if cached is not None and not fresh and time.monotonic() - cached.loaded < age:
            return cached
        pending = self._loading.get(org_id)
        if pending is not None and not fresh:
            return await asyncio.shield(pending)
        future: asyncio.Future[OrgLimits] = asyncio.get_running_loop().create_future()
        self._loading[org_id] = future
        try:
            # Version first: a change after this read bumps it, so the next Reserve reloads.
            try:
                version = await self.counters().version(org_id)
            except REDIS_DOWN:
                version = cached.version if cached else "0"
            limits = await self.limit_store().of_org(org_id)
            loaded = OrgLimits(version, limits)
            self._cache[org_id] = loaded
            self._orgs_by_tag[org_tag(org_id)] = org_id
            future.set_result(loaded)
            return loaded
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it through shield
            raise
        finally:
            self._loading.pop(org_id, None)

    def slots(self, limits: Sequence[Limit], now: datetime, req: ReserveIn | None = None,
              metric_amounts: tuple[int, int, int] | None = None) -> list[Slot]:
        out = []
        for lim in limits:
            win, key, spec = self._window(lim, now)
            need = 0
            if req is not None:
                need = core.need_of(lim.metric, req.tokens, req.cost_nusd, req.requests)
            elif metric_amounts is not None:
                need = core.need_of(lim.metric, *metric_amounts)
            blocking = core.blocks(lim.action, req.degraded if req else False)
            out.append(Slot(lim, win, key, need, blocking, spec))
        return out

    def _window(self, lim: Limit, now: datetime) -> tuple[core.Window, str, str]:
        """The limit's current window, counter key and script spec; a calendar period's
        are kept until it ends, a rolling window's key and spec for good."""
        cached = self._windows.get(id(lim))
        if cached is not None and cached[0] is lim:
            win = cached[1]
            if lim.period == K.LIMIT_PERIOD_ROLLING:
                return core.window(lim, now), cached[2], cached[3]
            if win.end is None or (win.start is not None and win.start <= now < win.end):
                return win, cached[2], cached[3]
        if len(self._windows) > 10_000:
            self._windows.clear()
        win = core.window(lim, now)
        cached = (lim, win, self.counters().keys.counter(lim, win), spec_of(lim, win))
        self._windows[id(lim)] = cached
        return win, cached[2], cached[3]

    # -- reserve -------------------------------------------------------------------------

    async def reserve(self, req: ReserveIn) -> Reserved:
        org = req.chain[0].org_id
        ttl = min(req.ttl_seconds or self.settings.budget_default_ttl_seconds,
                  self.settings.budget_max_ttl_seconds)
        cached = await self.org_limits(org)
        for _attempt in range(6):
            now = datetime.now(UTC)
            limits = [lim for s in req.chain for lim in cached.on(s)]
            try:
                slots = self.slots(limits, now, req)
            except Unavailable:
                return self._failed(limits, now)
            epoch = self._epochs.get(org, "")
            rid = "" if req.dry_run else new_reservation_id(org, epoch)
            try:
                res = await self.counters().reserve(
                    org, slots, now=now, ttl_ms=ttl * 1000, reservation_id=rid or "dry",
                    dry_run=req.dry_run, version=cached.version, epoch=epoch,
                    idem_key=req.idempotency_key,
                    fingerprint=req.fingerprint if req.idempotency_key else "")
            except REDIS_DOWN as exc:
                self.log.warning("budget.redis_unreachable", error=type(exc).__name__)
                return self._failed(limits, now)
            if res.status == "EMPTY":
                try:
                    await self.rebuild_org(org)
                except (Unavailable, *REDIS_DOWN) as exc:
                    self.log.warning("budget.rebuild_failed", org=org, error=str(exc)[:200])
                    return self._failed(limits, now)
                cached = await self.org_limits(org, fresh=True)
                continue
            if res.status == "EPOCH":  # rebuilt since this replica last looked
                self._epochs[org] = res.epoch
                continue
            if res.status == "STALE":
                cached = await self.org_limits(org, fresh=True)
                continue
            if res.status == "IDEM":
                if res.idem_fingerprint != req.fingerprint:
                    raise Conflict("idempotency_key: this key was used for a reservation with "
                                   "other parameters; use a new key for a new request")
                states = await self._states(slots, now)
                return Reserved(res.idem_reservation_id, K.BUDGET_DECISION_ALLOW, 0, states,
                                None, K.BUDGET_ENFORCEMENT_ENFORCED)
            checks = []
            for s, c in zip(slots, res.counters, strict=True):
                held_reserved = c.reserved - (s.need if res.status == "OK" and rid else 0)
                checks.append(Check(s.limit, c.used, held_reserved, s.need, c.retry_after_ms,
                                    s.window))
            decision = core.decide(checks, now, req.degraded)
            allowed = decision.decision == K.BUDGET_DECISION_ALLOW
            held = allowed and bool(rid)
            # Reported: the counters as they are now; levels as if the request were held.
            states = [self._state(Check(ch.limit, ch.used, ch.reserved + ch.need, ch.need,
                                        ch.retry_after_ms, ch.window) if held else ch,
                                  now, ch.limit.limit_id in decision.triggered, held=not held)
                      for ch in checks]
            if allowed and not req.dry_run:
                self._alerts(slots, checks, states, res.counters, req.request_id)
            return Reserved(rid if allowed else "", decision.decision, decision.retry_after_ms,
                            states, now + timedelta(seconds=ttl) if allowed and rid else None,
                            K.BUDGET_ENFORCEMENT_ENFORCED)
        raise Unavailable("the budget's limits kept changing during the reservation; retry")

    def _failed(self, limits: Sequence[Limit], now: datetime) -> Reserved:
        """Redis unreachable: each limit's fail mode decides, and the answer says which."""
        closed = [lim for lim in limits if lim.fails_closed]
        states = []
        for lim in limits:
            check = Check(lim, 0, 0, 0, window=core.window(lim, now))
            enf = (K.BUDGET_ENFORCEMENT_FAILED_CLOSED if lim.fails_closed
                   else K.BUDGET_ENFORCEMENT_FAILED_OPEN)
            states.append(State(check, K.BUDGET_LEVEL_UNSPECIFIED, enf, lim in closed,
                                check.window.end))
        if closed:
            return Reserved("", K.BUDGET_DECISION_DENY, 1000, states, None,
                            K.BUDGET_ENFORCEMENT_FAILED_CLOSED)
        return Reserved("", K.BUDGET_DECISION_ALLOW, 0, states, None,
                        K.BUDGET_ENFORCEMENT_FAILED_OPEN)

    def _state(self, check: Check, now: datetime, triggered: bool, *, held: bool) -> State:
        amount = check.used + check.reserved + (check.need if held else 0)
        lvl = core.level(amount, check.limit.limit, check.limit.warning_bp,
                         check.limit.critical_bp)
        return State(check, lvl, K.BUDGET_ENFORCEMENT_ENFORCED, triggered,
                     core.reset_time(check, now))

    def _alerts(self, slots: Sequence[Slot], checks: Sequence[Check], states: Sequence[State],
                counters: Sequence[Counter], request_id: str) -> None:
        for slot, check, counter in zip(slots, checks, counters, strict=True):
            actual = core.level(check.used + check.reserved + check.need, check.limit.limit,
                                check.limit.warning_bp, check.limit.critical_bp)
            if actual > max(counter.alerted, K.BUDGET_LEVEL_OK):
                state = State(replace(check, reserved=check.reserved + check.need), actual,
                              K.BUDGET_ENFORCEMENT_ENFORCED, False,
                              core.reset_time(check, datetime.now(UTC)))
                self.alert(slot, state, counter.alerted, actual, request_id)

    async def _states(self, slots: Sequence[Slot], now: datetime) -> list[State]:
        if not slots:
            return []
        org = slots[0].limit.scope.org_id
        counters = await self.counters().read(org, slots, now)
        return [self._state(Check(s.limit, c.used, c.reserved, 0, window=s.window), now, False,
                            held=False) for s, c in zip(slots, counters, strict=True)]

    # -- settle --------------------------------------------------------------------------

    async def settle(self, reservation_id: str, *, commit: bool, tokens: int = 0,
                     cost_nusd: int = 0, chain: tuple[Scope, ...] = (),
                     request_id: str = "") -> tuple[int, list[State]]:
        """(SettlementOutcome, states after) of a Commit or Release."""
        if commit and (tokens < 0 or cost_nusd < 0 or tokens > core.MAX_AMOUNT
                       or cost_nusd > core.MAX_AMOUNT):
            raise InvalidInput("actual_tokens", "actual_tokens and actual_cost_nusd must be "
                               f"between 0 and {core.MAX_AMOUNT}")
        tag = tag_of_reservation(reservation_id)
        if not reservation_id or (tag is None and not chain):
            raise NotFound(K.ERROR_REASON_RESERVATION_NOT_FOUND,
                           f"reservation {reservation_id!r} is not one this service issued; "
                           "pass the reservation_id from ReserveResponse")
        now = datetime.now(UTC)
        try:
            res = await self.counters().settle(reservation_id, commit=commit, tokens=tokens,
                                               cost_nusd=cost_nusd, now=now)
        except REDIS_DOWN as exc:
            raise Unavailable(f"Redis is unreachable ({type(exc).__name__}); retry the "
                              "settlement shortly") from None
        if res.status == "SETTLED":
            return budget_pb2.SETTLEMENT_OUTCOME_ALREADY_SETTLED, []
        if res.status == "MISSING":
            if not (commit and chain):
                raise NotFound(K.ERROR_REASON_RESERVATION_NOT_FOUND,
                               f"reservation {reservation_id!r} is unknown or expired (its "
                               "hold was given back); to still charge a late commit, pass "
                               "the request's chain")
            charged = await self._charge(chain, tokens, cost_nusd, now, request_id,
                                         reservation_id)
            if charged is None:  # a retried late commit (its first answer was lost)
                return budget_pb2.SETTLEMENT_OUTCOME_ALREADY_SETTLED, []
            return budget_pb2.SETTLEMENT_OUTCOME_LATE_COMMITTED, charged
        org_limits = self._cache.get(chain[0].org_id) if chain else None
        states, alerts = await self._settled_states(res.counters, now, org_limits,
                                                    reservation_id)
        if commit:
            self._alerts_after(alerts, request_id)
        outcome = (budget_pb2.SETTLEMENT_OUTCOME_COMMITTED if commit
                   else budget_pb2.SETTLEMENT_OUTCOME_RELEASED)
        return outcome, states

    async def _settled_states(self, rows: Sequence[tuple[str, Counter]], now: datetime,
                              known: OrgLimits | None, reservation_id: str
                              ) -> tuple[list[State], list[State]]:
        """The states after a settlement, and those that reached a level not alerted yet."""
        if known is None:
            org = self._orgs_by_tag.get(tag_of_reservation(reservation_id) or "")
            known = self._cache.get(org) if org else None
        by_id = known.by_id if known else {}
        states: list[State] = []
        alerts: list[State] = []
        for lid, c in rows:
            lim = by_id.get(lid)
            if lim is None:
                continue  # removed meanwhile, or this replica has not loaded the org yet
            check = Check(lim, c.used, c.reserved, 0, window=self._window(lim, now)[0])
            lvl = core.level(c.used + c.reserved, lim.limit, lim.warning_bp, lim.critical_bp)
            state = State(check, lvl, K.BUDGET_ENFORCEMENT_ENFORCED, False,
                          core.reset_time(check, now))
            states.append(state)
            if c.alerted < lvl and lvl >= K.BUDGET_LEVEL_WARNING:
                alerts.append(state)
        return states, alerts

    def _alerts_after(self, states: Sequence[State], request_id: str) -> None:
        for st in states:
            lim = st.check.limit
            slot = Slot(lim, st.check.window, self._window(lim, st.check.window.start
                                                           or datetime.now(UTC))[1])
            self.alert(slot, st, 0, st.level, request_id)

    async def _charge(self, chain: tuple[Scope, ...], tokens: int, cost_nusd: int,
                      now: datetime, request_id: str,
                      reservation_id: str) -> list[State] | None:
        """Charge a late commit from its chain; None when it was charged already."""
        org = chain[0].org_id
        cached = await self.org_limits(org)
        limits = [lim for s in chain for lim in cached.on(s)]
        slots = self.slots(limits, now, metric_amounts=(tokens, cost_nusd, 1))
        try:
            res = await self.counters().charge(org, slots, now, reservation_id)
        except REDIS_DOWN as exc:
            raise Unavailable(f"Redis is unreachable ({type(exc).__name__})") from None
        if res.status == "EMPTY":  # Redis came back empty: rebuild, then charge
            await self.rebuild_org(org)
            res = await self.counters().charge(org, slots, now, reservation_id)
            if res.status == "EMPTY":
                raise Unavailable("the budget counters are being rebuilt; retry shortly")
        if res.status == "SETTLED":
            return None
        states, alerts = await self._settled_states(res.counters, now, cached, "")
        self._alerts_after(alerts, request_id)
        if self.usage.live:  # a catch-up window may have to take it back from the ledger
            try:
                await self.counters().schedule_catchup(org, _ms(now))
            except REDIS_DOWN:
                pass  # the window's passes still come, only later
        return states

    # -- limits --------------------------------------------------------------------------

    async def set_limit(self, lim: Limit, *, create: bool) -> Limit:
        store = self.limit_store()
        old = None if create else await store.get(lim.limit_id)
        saved = None if (old is None and not create) else await store.upsert(lim, create=create)
        if saved is None:
            raise NotFound(K.ERROR_REASON_LIMIT_NOT_FOUND,
                           f"limit {lim.limit_id!r} does not exist; leave limit_id empty to "
                           "create a limit")
        for org in {lim.scope.org_id, old.scope.org_id if old else lim.scope.org_id}:
            await self._bump(org)
        self.log.info("budget.limit_set", limit_id=saved.limit_id, scope=saved.scope.text,
                      created=create)
        return saved

    async def remove_limit(self, limit_id: str) -> Limit:
        removed = await self.limit_store().delete(limit_id)
        if removed is None:
            raise NotFound(K.ERROR_REASON_LIMIT_NOT_FOUND, f"limit {limit_id!r} does not exist; "
                           "see ListLimits for the ids")
        await self._bump(removed.scope.org_id)
        try:
            for slot in self.slots([removed], datetime.now(UTC)):
                await self.counters().delete_counter(slot)
        except (Unavailable, *REDIS_DOWN):
            pass  # its counters expire with their period
        self.log.info("budget.limit_removed", limit_id=limit_id)
        return removed

    async def _bump(self, org_id: str) -> None:
        """Make a limit change effective at once on every replica (they check the version
        in the Reserve script and reload on change)."""
        self._cache.pop(org_id, None)
        try:
            await self.counters().bump_version(org_id)
        except (Unavailable, *REDIS_DOWN) as exc:
            self.log.warning("budget.version_bump_failed", org=org_id, error=type(exc).__name__)

    # -- status, reset, rebuild ----------------------------------------------------------

    async def status(self, scope: Scope, descendants: bool) -> tuple[list[State], int]:
        cached = await self.org_limits(scope.org_id)
        limits = [lim for lim in cached.limits
                  if lim.scope == scope or (descendants and _below(lim.scope, scope))]
        now = datetime.now(UTC)
        try:
            if limits and not await self.counters().is_ready(scope.org_id):
                await self.rebuild_org(scope.org_id)  # Redis came back empty
            slots = self.slots(limits, now)
            return await self._states(slots, now), K.BUDGET_ENFORCEMENT_ENFORCED
        except (Unavailable, *REDIS_DOWN):
            failed = self._failed(limits, now)
            return failed.states, failed.enforcement

    async def reset(self, scope: Scope, limit_id: str) -> tuple[int, datetime]:
        cached = await self.org_limits(scope.org_id, fresh=True)
        limits = [lim for lim in cached.on(scope) if not limit_id or lim.limit_id == limit_id]
        if limit_id and not limits:
            raise NotFound(K.ERROR_REASON_LIMIT_NOT_FOUND,
                           f"limit {limit_id!r} is not attached to scope {scope.text}")
        now = datetime.now(UTC)
        await self.limit_store().mark_reset([lim.limit_id for lim in limits], now)
        try:
            # Version first: a rebuild that planned its sums before this Reset then cannot
            # install them over the cleared counters (rebuild.lua refuses them).
            await self.counters().bump_version(scope.org_id)
            for slot in self.slots(limits, now):
                await self.counters().set_used(slot, {}, now, restart_alerts=True)
        except REDIS_DOWN as exc:
            raise Unavailable(f"Redis is unreachable ({type(exc).__name__}); the reset is "
                              "recorded and applies at the next rebuild") from None
        return len(limits), now

    async def rebuild_org(self, org_id: str, *, force: bool = False) -> datetime:
        """Rebuild the current periods' counters of one organization from the usage source
        (unless another replica did it meanwhile and `force` is not set), and open its
        catch-up window (see catch_up)."""
        counters = self.counters()
        if not await counters.try_lock_rebuild(org_id, self._owner):
            for _ in range(100):  # another replica rebuilds: wait for it
                await asyncio.sleep(0.05)
                if await counters.is_ready(org_id):
                    return datetime.now(UTC)
            raise Unavailable(f"the counters of {org_id} are being rebuilt by another replica")
        try:
            if not force and await counters.is_ready(org_id):
                return datetime.now(UTC)  # rebuilt by another replica since we looked
            for _attempt in range(3):
                try:
                    return await self._rebuild_once(org_id, force)
                except LimitsChanged:  # a Reset or limit change while the ledger summed
                    continue
            raise Unavailable(f"the limits of {org_id} kept changing during the rebuild; "
                              "retry")
        finally:
            await counters.unlock_rebuild(org_id)

    async def _rebuild_once(self, org_id: str, force: bool) -> datetime:
        """Plan the counters from the organization's limits as they are now, sum them from
        the usage source and install them, unless the limits changed meanwhile
        (LimitsChanged: the sums could undo a Reset or belong to other counters)."""
        counters = self.counters()
        cached = await self.org_limits(org_id, fresh=True)
        now = datetime.now(UTC)
        window = self.settings.budget_catchup_seconds if self.usage.live else 0
        from_ms = _ms(now - timedelta(seconds=window)) if window else 0
        horizon = _at(from_ms) if window else None
        plans = [(slot, _spans(slot, now, horizon)) for slot in self.slots(cached.limits,
                                                                            now)]
        # Pairs (whole span, part since the horizon): one snapshot answers both.
        queries = [UsageQuery(slot.limit.scope, a, b)
                   for slot, spans in plans for sp in spans
                   for a, b in ((sp.start, sp.end), (sp.recent or sp.start, sp.end))]
        try:
            totals, watermark = await self.usage.sum(queries)
        except Exception as exc:  # the ledger is away: no rebuild, fail modes decide
            raise Unavailable(f"cannot rebuild counters: the ledger did not answer "
                              f"({type(exc).__name__})") from None
        answers = iter(totals)
        fields: list[tuple[Slot, dict[str, int]]] = []
        for slot, spans in plans:
            values: dict[str, int] = {}
            for sp in spans:
                whole, recent = (next(answers).of(slot.limit.metric) for _ in range(2))
                if whole:
                    values[sp.field] = whole
                if sp.recent is not None:
                    values[f"L{sp.base}"] = recent
            bucket_ms, count = slot.bucket
            if bucket_ms:
                values["used"] = sum(v for k, v in values.items() if k.startswith("b"))
                values["lo"] = _ms(now) // bucket_ms - count + 1
            fields.append((slot, values))
        epoch = new_epoch()
        until_ms = _ms(now) + int(window * 1000) if window else 0
        if await counters.install_rebuild(org_id, fields, now=now, epoch=epoch,
                                          from_ms=from_ms, until_ms=until_ms,
                                          force=force, version=cached.version):
            self._epochs[org_id] = epoch
        await counters.remember_org(org_id)
        self.log.info("budget.rebuilt", org=org_id, limits=len(plans),
                      watermark=watermark.isoformat(), catchup_seconds=window)
        return watermark

    async def catch_up(self, org_id: str) -> int | None:
        """One catch-up pass after a rebuild: usage events of reservations made before the
        rebuild that reach the ledger after it (a router's outbox while NATS was down, the
        stream, a ledger batch) are added to the counters, each once. The ledger sums the
        events reserved since the window's horizon, leaving out the reservations made since
        the rebuild (their ids carry the new epoch) and those committed to this budget since
        (the counted set): both the counters count themselves. What the sum grew by since
        the last pass is added (lua/catchup.lua). A pass that adds nothing doubles the wait
        for the next, from TOKENRT_BUDGET_CATCHUP_INTERVAL_SECONDS up to 16 times that.
        Returns the amount added (0 when nothing was, the pass was not due, or another
        replica's commit changed the counted set meanwhile: the next pass sums again), None
        when the window is closed."""
        counters = self.counters()
        win = await counters.catchup_window(org_id)
        if win is None:
            return None
        now = datetime.now(UTC)
        if _ms(now) < win.next_ms:  # another replica's pass moved it
            await counters.schedule_catchup(org_id, win.next_ms)
            return 0
        base_ms = int(self.settings.budget_catchup_interval_seconds * 1000)
        if len(win.counted) > MAX_COUNTED:  # more ids than the ledger leaves out in a call
            self.log.warning("budget.catchup_skipped", org=org_id, counted=len(win.counted))
            # Not due again at once: it would take a place in every capped round.
            await counters.schedule_catchup(org_id, _ms(now) + base_ms * CATCHUP_BACKOFF)
            return 0
        cached = await self.org_limits(org_id)
        if cached.version != await counters.version(org_id):
            # A limit changed or was reset: the ranges must be those the rebuild summed.
            cached = await self.org_limits(org_id, fresh=True)
        horizon, since = _at(win.from_ms), _at(win.since_ms)
        plans = [(slot, [sp for sp in _spans(slot, now, horizon)
                         if sp.recent is not None and sp.start <= since])
                 for slot in self.slots(cached.limits, now)]
        plans = [(slot, spans) for slot, spans in plans if spans]
        queries = [UsageQuery(slot.limit.scope, sp.recent or sp.start, sp.end)
                   for slot, spans in plans for sp in spans]
        totals: list[UsageTotals] = []
        if queries:
            totals, _ = await self.usage.sum(queries, reservation_prefix(org_id, win.epoch),
                                             win.counted)
        answers = iter(totals)
        fields = [(slot, {sp.base: next(answers).of(slot.limit.metric) for sp in spans})
                  for slot, spans in plans]
        added = await counters.apply_catchup(org_id, win, fields, now,
                                             (base_ms, base_ms * CATCHUP_BACKOFF))
        if added:
            self.log.info("budget.caught_up", org=org_id, added=added)
        return added or 0

    async def catch_up_all(self, interval_seconds: float) -> int:
        """Catch-up passes for the organizations whose pass is due, the longest-due first,
        at most TOKENRT_BUDGET_CATCHUP_MAX_PASSES_PER_SECOND per second of the interval (the
        others wait for the next round, so with many windows open each one's passes come
        less often). One replica at a time per organization (a lock held for the longest a
        pass can take); a lost race only costs a repeated pass. When the ledger fails, the
        organization's next pass waits the longest interval and the round ends, so a ledger
        that is down or overloaded gets one call per round from each replica. Returns the
        passes run."""
        counters = self.counters()
        s = self.settings
        most = max(1, int(s.budget_catchup_max_passes_per_second * interval_seconds))
        lock_ms = int((interval_seconds + s.rpc_timeout_seconds) * 1000)
        runs = 0
        for org in await counters.due_catchups(datetime.now(UTC), most):
            if not await counters.try_lock_catchup(org, self._owner, lock_ms):
                continue
            runs += 1
            try:
                if await self.catch_up(org) is None:  # the window closed
                    await counters.forget_catchup(org)
            except (Unavailable, *REDIS_DOWN) as exc:
                self.log.warning("budget.catchup_failed", org=org, error=str(exc)[:200])
            except Exception as exc:  # the ledger away or overloaded: back off
                self.log.warning("budget.catchup_failed", org=org, error=type(exc).__name__)
                later = datetime.now(UTC) + timedelta(seconds=interval_seconds * CATCHUP_BACKOFF)
                await counters.schedule_catchup(org, _ms(later))
                break
            finally:
                await counters.unlock_catchup(org)
        return runs

    async def rebuild(self, scope: Scope | None) -> tuple[int, datetime]:
        orgs = [scope.org_id] if scope else await self.limit_store().orgs()
        count = 0
        watermark = datetime.now(UTC)
        for org in orgs:
            mark = await self.rebuild_org(org, force=True)
            watermark = min(watermark, mark)
            count += len((await self.org_limits(org)).limits)
        return count, watermark

    async def sweep_all(self) -> int:
        counters = self.counters()
        now = datetime.now(UTC)
        return sum([await counters.sweep(tag, now) for tag in await counters.org_tags()])


def _below(scope: Scope, top: Scope) -> bool:
    """Whether `scope` lies under `top` (same org and the same ids where top sets them)."""
    if scope.org_id != top.org_id:
        return False
    for name in ("project_id", "user_id", "session_id", "api_key_id"):
        want = getattr(top, name)
        if want and getattr(scope, name) != want:
            return False
    return True


@dataclass(frozen=True)
class Span:
    """One counter field's range of reservation times to ask the ledger for: `field` is
    `used` or a rolling bucket `b<index>`, `base` names its catch-up base (`L<base>`), and
    `recent` is where the part since the catch-up horizon starts (None: none of it is)."""

    field: str
    base: str
    start: datetime
    end: datetime
    recent: datetime | None


def _spans(slot: Slot, now: datetime, horizon: datetime | None) -> list[Span]:
    lim = slot.limit
    if lim.period == K.LIMIT_PERIOD_ROLLING:
        bucket_ms, count = slot.bucket
        cur = int(now.timestamp() * 1000) // bucket_ms
        out = []
        for idx in range(cur - count + 1, cur + 1):
            a = _at(idx * bucket_ms)
            b = _at((idx + 1) * bucket_ms)
            if lim.reset_at and b <= lim.reset_at:
                continue
            a = max(a, lim.reset_at) if lim.reset_at else a
            out.append(Span(f"b{idx}", str(idx), a, b, _recent(a, b, horizon)))
        return out
    start = core.charged_since(lim, slot.window) or datetime(1970, 1, 1, tzinfo=UTC)
    end = now + timedelta(minutes=1)
    return [Span("used", "used", start, end, _recent(start, end, horizon))]


def _recent(start: datetime, end: datetime, horizon: datetime | None) -> datetime | None:
    if horizon is None or end <= horizon:
        return None
    return max(start, horizon)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
