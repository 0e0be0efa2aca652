"""Run the budget service: `python -m tokenrt_budget` or `tokenrt serve budget`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from tokenrt.v1 import budget_pb2_grpc, events_pb2
from tokenrt_budget.api import BudgetApi, state_out
from tokenrt_budget.service import REDIS_DOWN, Budget, State
from tokenrt_budget.store import (
    Counters,
    LedgerUsage,
    LimitStore,
    NoUsage,
    Slot,
    UsageSource,
    migrate,
)
from tokenrt_common.client import open_channel
from tokenrt_common.redis_pipelined import PipelinedConnection
from tokenrt_common.server import Runtime, Servicer, ServiceSpec, run, servicer


class Parts:
    """The budget's stores, built as their connections arrive."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.counters: Counters | None = None
        self.limits: LimitStore | None = None
        self._alerts: set[asyncio.Task[None]] = set()

    def get_counters(self) -> Counters | None:
        if self.counters is None:
            redis = self.runtime.infra.redis
            if redis is None:
                return None
            s = self.runtime.settings
            self.counters = Counters(redis, s.budget_redis_prefix,
                                     PipelinedConnection(s.redis_url,
                                                         s.dependency_timeout_seconds))
        return self.counters

    async def close(self) -> None:
        """Closes the scripts' connection (at shutdown)."""
        if self.counters is not None:
            await self.counters.close()

    async def prepare_postgres(self) -> None:
        infra, log = self.runtime.infra, self.runtime.log
        await infra.wait_for("postgres")
        assert infra.pg is not None
        while True:
            try:
                async with infra.pg.acquire() as conn:
                    await migrate(conn, self.runtime.settings.budget_schema, log)
                break
            except Exception as exc:  # Postgres away during start-up: try again
                log.warning("budget.migrate_failed", error=type(exc).__name__,
                            detail=str(exc)[:200])
                await asyncio.sleep(1)
        self.limits = LimitStore(infra.pg, self.runtime.settings.budget_schema)

    async def sweep_forever(self, budget: Budget) -> None:
        while True:
            await asyncio.sleep(self.runtime.settings.budget_sweep_interval_seconds)
            try:
                swept = await budget.sweep_all()
                if swept:
                    self.runtime.log.info("budget.swept", reservations=swept)
            except Exception as exc:  # Redis away: next round
                self.runtime.log.warning("budget.sweep_failed", error=type(exc).__name__)

    async def catch_up_forever(self, budget: Budget) -> None:
        interval = self.runtime.settings.budget_catchup_interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await budget.catch_up_all(interval)
            except Exception as exc:  # Redis away: next round
                self.runtime.log.warning("budget.catchup_failed", error=type(exc).__name__)

    def alert(self, slot: Slot, state: State, previous: int, level: int, request_id: str) -> None:
        task = asyncio.create_task(self._alert(slot, state, previous, level, request_id))
        self._alerts.add(task)
        task.add_done_callback(self._alerts.discard)

    async def _alert(self, slot: Slot, state: State, previous: int, level: int,
                     request_id: str) -> None:
        log = self.runtime.log
        counters = self.get_counters()
        try:
            if counters is None or not await counters.mark_alert(slot, level):
                return  # another request or replica published this level already
        except REDIS_DOWN:
            return
        org = slot.limit.scope.org_id
        alert = events_pb2.BudgetAlert(alert_id=uuid.uuid4().hex, previous_level=previous,  # type: ignore[arg-type]
                                       level=level, limit=state_out(state),  # type: ignore[arg-type]
                                       request_id=request_id)
        alert.occurred_at.FromDatetime(datetime.now(UTC))
        subject = f"{self.runtime.settings.budget_alert_subject_prefix}.{_token(org)}"
        nc = self.runtime.infra.nats
        log.info("budget.alert", org=org, limit_id=slot.limit.limit_id, level=level)
        if nc is None or not nc.is_connected:
            log.warning("budget.alert_not_published", reason="nats not connected",
                        limit_id=slot.limit.limit_id)
            return
        try:
            await nc.publish(subject, alert.SerializeToString(),
                             headers={"Nats-Msg-Id": alert.alert_id})
        except Exception as exc:  # alerting must never fail a budget call
            log.warning("budget.alert_not_published", error=type(exc).__name__)


def _token(org: str) -> str:
    """An org id as one NATS subject token."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in org) or "_"


def build(runtime: Runtime) -> Sequence[Servicer]:
    parts = Parts(runtime)
    settings = runtime.settings
    usage: UsageSource = NoUsage()
    if settings.budget_rebuild_source == "ledger":
        usage = LedgerUsage(open_channel(settings, "ledger"), settings.rpc_timeout_seconds)
    budget = Budget(settings, parts.get_counters, lambda: parts.limits, usage, runtime.log,
                    parts.alert)
    runtime.spawn(parts.prepare_postgres(), "budget-migrate")
    runtime.spawn(parts.sweep_forever(budget), "budget-sweeper")
    runtime.close_at_shutdown(parts.close, "budget-close")
    if usage.live and settings.budget_catchup_seconds:
        runtime.spawn(parts.catch_up_forever(budget), "budget-catchup")
    return [servicer(BudgetApi(budget), budget_pb2_grpc)]


SPEC = ServiceSpec(name="budget", needs=frozenset({"redis", "postgres", "nats"}), build=build)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
