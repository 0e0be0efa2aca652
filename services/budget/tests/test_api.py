"""The budget service over gRPC, one real process on real Redis, Postgres and NATS."""

from __future__ import annotations

import asyncio

import grpc
import nats
import pytest

from tokenrt.v1 import budget_pb2, common_pb2, events_pb2
from tokenrt.v1.budget_pb2_grpc import BudgetServiceStub

from .conftest import BudgetEnv, chain, limit, new_org, scope

K = common_pb2
B = budget_pb2


async def reserve(stub: BudgetServiceStub, org: str, tokens: int = 0, cost: int = 0,
                  **kw: object) -> B.ReserveResponse:
    return await stub.Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=tokens,
                                               estimated_cost_nusd=cost, **kw))  # type: ignore[arg-type]


async def status(stub: BudgetServiceStub, text: str) -> dict[str, common_pb2.LimitState]:
    reply = await stub.Status(B.StatusRequest(scope=scope(text)))
    return {s.limit_id: s for s in reply.limits}


async def test_reserve_commit_status(stub: BudgetServiceStub) -> None:
    org = new_org()
    lim = (await stub.SetLimit(B.SetLimitRequest(limit=limit(f"project:{org}/web", 1000)))).limit
    assert lim.limit_id and lim.warning_threshold_bp == 8000 and lim.critical_threshold_bp == 9500
    r = await reserve(stub, org, tokens=300)
    assert r.decision == K.BUDGET_DECISION_ALLOW and r.reservation_id
    assert r.enforcement == K.BUDGET_ENFORCEMENT_ENFORCED
    [st] = r.limits
    assert (st.used, st.reserved, st.remaining, st.limit) == (0, 300, 700, 1000)
    assert st.reset_at.seconds > st.period_start.seconds
    c = await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id, actual_tokens=120))
    assert c.outcome == B.SETTLEMENT_OUTCOME_COMMITTED
    assert (c.limits[0].used, c.limits[0].reserved) == (120, 0)
    again = await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id, actual_tokens=120))
    assert again.outcome == B.SETTLEMENT_OUTCOME_ALREADY_SETTLED
    s = (await status(stub, f"project:{org}/web"))[lim.limit_id]
    assert (s.used, s.reserved, s.remaining, s.level) == (120, 0, 880, K.BUDGET_LEVEL_OK)


async def test_all_or_nothing_and_the_strictest_action_wins(stub: BudgetServiceStub) -> None:
    org = new_org()
    big = (await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 10_000)))).limit
    await stub.SetLimit(B.SetLimitRequest(limit=limit(f"user:{org}/web/alice", 100,
                                                      action=K.LIMIT_ACTION_DEGRADE)))
    r = await reserve(stub, org, tokens=150)
    assert r.decision == K.BUDGET_DECISION_DEGRADE and not r.reservation_id
    assert [s.triggered for s in r.limits if s.limit_id == big.limit_id] == [False]
    # Nothing was held on the org limit although it had room.
    assert (await status(stub, f"org:{org}"))[big.limit_id].reserved == 0
    # Degraded requests pass a DEGRADE limit, flagged.
    d = await reserve(stub, org, tokens=150, degraded=True)
    assert d.decision == K.BUDGET_DECISION_ALLOW
    assert any(s.triggered and s.level == K.BUDGET_LEVEL_EXCEEDED for s in d.limits)
    await stub.Release(B.ReleaseRequest(reservation_id=d.reservation_id))
    await stub.SetLimit(B.SetLimitRequest(limit=limit(f"project:{org}/web", 120,
                                                      action=K.LIMIT_ACTION_THROTTLE,
                                                      period=K.LIMIT_PERIOD_HOUR)))
    t = await reserve(stub, org, tokens=150)
    assert t.decision == K.BUDGET_DECISION_THROTTLE and 0 < t.retry_after_ms <= 3_600_000
    await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 140)))
    n = await reserve(stub, org, tokens=150)
    assert n.decision == K.BUDGET_DECISION_DENY
    denied = [s for s in n.limits if s.triggered]
    assert len(denied) == 1 and denied[0].action == K.LIMIT_ACTION_DENY
    assert denied[0].remaining == 140 and denied[0].reset_at.seconds > 0


async def test_larger_actual_is_charged_and_release_gives_back(stub: BudgetServiceStub) -> None:
    org = new_org()
    lim = (await stub.SetLimit(B.SetLimitRequest(limit=limit(
        f"org:{org}", 10**9, metric=K.LIMIT_METRIC_COST, period=K.LIMIT_PERIOD_MONTH,
        time_zone="Europe/Berlin")))).limit
    r = await reserve(stub, org, cost=4 * 10**8)
    await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id,
                                      actual_cost_nusd=7 * 10**8))
    s = (await status(stub, f"org:{org}"))[lim.limit_id]
    assert s.used == 7 * 10**8 and s.level == K.BUDGET_LEVEL_OK
    # The next request sees it: 4e8 more would pass 1e9.
    assert (await reserve(stub, org, cost=4 * 10**8)).decision == K.BUDGET_DECISION_DENY
    ok = await reserve(stub, org, cost=3 * 10**8)
    assert ok.decision == K.BUDGET_DECISION_ALLOW
    rel = await stub.Release(B.ReleaseRequest(reservation_id=ok.reservation_id))
    assert rel.outcome == B.SETTLEMENT_OUTCOME_RELEASED
    assert (await status(stub, f"org:{org}"))[lim.limit_id].reserved == 0
    again = await stub.Release(B.ReleaseRequest(reservation_id=ok.reservation_id))
    assert again.outcome == B.SETTLEMENT_OUTCOME_ALREADY_SETTLED


async def test_expired_reservations_give_back_and_late_commits(stub: BudgetServiceStub) -> None:
    org = new_org()
    lim = (await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 100)))).limit
    r = await reserve(stub, org, tokens=100, ttl_seconds=1)
    assert r.decision == K.BUDGET_DECISION_ALLOW
    assert (await reserve(stub, org, tokens=1)).decision == K.BUDGET_DECISION_DENY
    await asyncio.sleep(2.2)  # expired; the sweeper (every 0.5 s) gives it back
    assert (await status(stub, f"org:{org}"))[lim.limit_id].reserved == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id, actual_tokens=10))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "chain" in err.value.details()
    late = await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id, actual_tokens=10,
                                             chain=chain(org)))
    assert late.outcome == B.SETTLEMENT_OUTCOME_LATE_COMMITTED and late.limits[0].used == 10
    # Its answer was lost and the caller retries (no catch-up window is open here): the
    # late commit's tombstone answers, nothing is charged again.
    for _ in range(2):
        again = await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id,
                                                  actual_tokens=10, chain=chain(org)))
        assert again.outcome == B.SETTLEMENT_OUTCOME_ALREADY_SETTLED
    assert (await status(stub, f"org:{org}"))[lim.limit_id].used == 10
    assert (await reserve(stub, org, tokens=90)).decision == K.BUDGET_DECISION_ALLOW


async def test_expired_hold_is_given_back_inside_reserve(stub: BudgetServiceStub) -> None:
    """Without waiting for the sweeper: the next Reserve sweeps what expired."""
    org = new_org()
    await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 100)))
    await reserve(stub, org, tokens=100, ttl_seconds=1)
    await asyncio.sleep(1.1)
    assert (await reserve(stub, org, tokens=100)).decision == K.BUDGET_DECISION_ALLOW


async def test_rolling_window_throttles_with_retry_after(stub: BudgetServiceStub) -> None:
    org = new_org()
    await stub.SetLimit(B.SetLimitRequest(limit=limit(
        f"project:{org}/web", 3, metric=K.LIMIT_METRIC_REQUESTS, period=K.LIMIT_PERIOD_ROLLING,
        rolling_window_seconds=2, action=K.LIMIT_ACTION_THROTTLE)))
    for _ in range(3):
        r = await reserve(stub, org)
        await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id))
    t = await reserve(stub, org)
    assert t.decision == K.BUDGET_DECISION_THROTTLE and 0 < t.retry_after_ms <= 2000
    await asyncio.sleep(t.retry_after_ms / 1000 + 0.1)
    assert (await reserve(stub, org)).decision == K.BUDGET_DECISION_ALLOW


async def test_soft_limit_allows_and_flags(stub: BudgetServiceStub) -> None:
    org = new_org()
    await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 10,
                                                      action=K.LIMIT_ACTION_ALLOW)))
    r = await reserve(stub, org, tokens=25)
    assert r.decision == K.BUDGET_DECISION_ALLOW and r.reservation_id
    assert r.limits[0].triggered and r.limits[0].utilization_bp == 25000


async def test_idempotent_reserve(stub: BudgetServiceStub) -> None:
    org = new_org()
    lim = (await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 100)))).limit
    a = await reserve(stub, org, tokens=30, idempotency_key="k1")
    b = await reserve(stub, org, tokens=30, idempotency_key="k1")
    assert a.reservation_id == b.reservation_id
    assert (await status(stub, f"org:{org}"))[lim.limit_id].reserved == 30
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await reserve(stub, org, tokens=31, idempotency_key="k1")
    assert err.value.code() == grpc.StatusCode.ABORTED


async def test_alert_once_per_level_per_period(stub: BudgetServiceStub,
                                               module_budget: BudgetEnv) -> None:
    org = new_org()
    nc = await nats.connect("nats://127.0.0.1:4222", connect_timeout=2)
    got: list[events_pb2.BudgetAlert] = []

    async def on(msg: nats.aio.msg.Msg) -> None:
        got.append(events_pb2.BudgetAlert.FromString(msg.data))

    prefix = module_budget.env["TOKENRT_BUDGET_ALERT_SUBJECT_PREFIX"]
    await nc.subscribe(f"{prefix}.{org}", cb=on)
    await nc.flush()
    await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 100)))
    for tokens in (50, 31, 1, 1, 14, 3):  # 50, 81 (warning), 82, 83, 97 (critical), 100
        r = await reserve(stub, org, tokens=tokens)
        await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id, actual_tokens=tokens))
    await asyncio.sleep(0.5)
    await nc.close()
    levels = [a.level for a in got]
    assert levels == [K.BUDGET_LEVEL_WARNING, K.BUDGET_LEVEL_CRITICAL, K.BUDGET_LEVEL_EXCEEDED]
    assert got[-1].limit.used + got[-1].limit.reserved == 100


async def test_list_remove_and_reset(stub: BudgetServiceStub) -> None:
    org = new_org()
    ids = []
    for i in range(5):
        lim = await stub.SetLimit(B.SetLimitRequest(limit=limit(f"project:{org}/p{i}", 10 + i)))
        ids.append(lim.limit.limit_id)
    page = await stub.ListLimits(B.ListLimitsRequest(org_id=org, page_size=3))
    rest = await stub.ListLimits(B.ListLimitsRequest(org_id=org, page_size=3,
                                                     page_token=page.next_page_token))
    assert sorted(x.limit_id for x in [*page.limits, *rest.limits]) == sorted(ids)
    assert not rest.next_page_token
    only = await stub.ListLimits(B.ListLimitsRequest(scope=scope(f"project:{org}/p2")))
    assert [x.limit for x in only.limits] == [12]
    removed = await stub.RemoveLimit(B.RemoveLimitRequest(limit_id=ids[0]))
    assert removed.limit.limit_id == ids[0]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RemoveLimit(B.RemoveLimitRequest(limit_id=ids[0]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Reset zeroes used on the scope.
    lim = (await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 100)))).limit
    r = await reserve(stub, org, tokens=60)
    await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id, actual_tokens=60))
    reset = await stub.Reset(B.ResetRequest(scope=scope(f"org:{org}")))
    assert reset.limits_reset == 1
    assert (await status(stub, f"org:{org}"))[lim.limit_id].used == 0


async def test_updated_limit_applies_at_once(stub: BudgetServiceStub) -> None:
    org = new_org()
    lim = (await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 100)))).limit
    assert (await reserve(stub, org, tokens=60, dry_run=True)).decision == K.BUDGET_DECISION_ALLOW
    lim.limit = 50
    await stub.SetLimit(B.SetLimitRequest(limit=lim))
    assert (await reserve(stub, org, tokens=60, dry_run=True)).decision == K.BUDGET_DECISION_DENY


@pytest.mark.parametrize("bad, field", [
    (limit("org:x", -5), "limit.limit"),
    (limit("org:x", 0), "limit.limit"),
    (limit("org:x", 2**62), "limit.limit"),
    (budget_pb2.Limit(scope=common_pb2.Scope(kind=9, org_id="x"), metric=1, period=3, limit=5,
                      action=2), "limit.scope.kind"),
    (limit("org:x", 5, period=K.LIMIT_PERIOD_ROLLING, rolling_window_seconds=0),
     "limit.rolling_window_seconds"),
    (limit("org:x", 5, time_zone="Nowhere/City"), "limit.time_zone"),
    (limit("org:x", 5, action=0), "limit.action"),
])
async def test_bad_limits_are_invalid_argument(stub: BudgetServiceStub, bad: budget_pb2.Limit,
                                               field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SetLimit(B.SetLimitRequest(limit=bad))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details()
    detail = dict(err.value.trailing_metadata() or ())["tokenrt-error-detail-bin"]
    assert common_pb2.ErrorDetail.FromString(detail).field == field


async def test_bad_requests_get_clear_statuses(stub: BudgetServiceStub) -> None:
    org = new_org()
    cases = [
        (B.ReserveRequest(chain=common_pb2.ScopeChain(), estimated_tokens=1), "chain.scopes"),
        (B.ReserveRequest(chain=chain(org), estimated_tokens=-1), "estimated_tokens"),
        (B.ReserveRequest(chain=common_pb2.ScopeChain(scopes=[
            common_pb2.Scope(kind=42, org_id=org)])), "unknown scope kind"),
        (B.ReserveRequest(chain=chain(org), ttl_seconds=-3), "ttl_seconds"),
    ]
    for request, words in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Reserve(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, words
        assert words in err.value.details()
    for rid in ("nope", "0123456789ab.0123456789abcdef0123456789abcdef"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Commit(B.CommitRequest(reservation_id=rid, actual_tokens=1))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Release(B.ReleaseRequest(reservation_id=rid))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 5, limit_id="lim_nope")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_batches_answer_per_item(stub: BudgetServiceStub) -> None:
    org = new_org()
    await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 100)))
    reply = await stub.ReserveBatch(B.ReserveBatchRequest(requests=[
        B.ReserveRequest(chain=chain(org), estimated_tokens=40),
        B.ReserveRequest(chain=chain(org), estimated_tokens=-1),
        B.ReserveRequest(chain=chain(org), estimated_tokens=70)]))
    kinds = [r.WhichOneof("result") for r in reply.results]
    assert kinds == ["response", "error", "response"]
    assert reply.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    # Items run concurrently: exactly one of 40 and 70 fits the 100.
    answers = [reply.results[0].response, reply.results[2].response]
    assert sorted(a.decision for a in answers) == [K.BUDGET_DECISION_ALLOW,
                                                   K.BUDGET_DECISION_DENY]
    [rid] = [a.reservation_id for a in answers if a.reservation_id]
    settled = await stub.SettleBatch(B.SettleBatchRequest(settlements=[
        B.Settlement(commit=B.CommitRequest(reservation_id=rid, actual_tokens=10)),
        B.Settlement(),
        B.Settlement(release=B.ReleaseRequest(reservation_id="nope"))]))
    assert settled.results[0].commit.outcome == B.SETTLEMENT_OUTCOME_COMMITTED
    assert settled.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "settlements[1]" in settled.results[1].error.message
    assert settled.results[2].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    # A batch of one (the router's at low load) answers per item too.
    [bad] = (await stub.ReserveBatch(B.ReserveBatchRequest(requests=[
        B.ReserveRequest(chain=chain(org), estimated_tokens=-1)]))).results
    assert bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    [one] = (await stub.ReserveBatch(B.ReserveBatchRequest(requests=[
        B.ReserveRequest(chain=chain(org), estimated_tokens=80)]))).results
    assert one.response.decision == K.BUDGET_DECISION_ALLOW
    [again] = (await stub.SettleBatch(B.SettleBatchRequest(settlements=[
        B.Settlement(release=B.ReleaseRequest(reservation_id=one.response.reservation_id))]))).results
    assert again.release.outcome == B.SETTLEMENT_OUTCOME_RELEASED
