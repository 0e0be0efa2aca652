"""Faults under load (issue 11): while the load generator drives the router at a steady
rate through the simulator, in turn SIGKILL each service and start it again; stop and start
NATS, Postgres and Redis; make the provider answer 429, 500 or time out. After each, what
the callers saw is compared with the ledger and the budget (audit.py).

Targets, one test each per phase: no usage event lost, none double-counted, every answer's
tokens and cost as recorded, no hard budget overspent, the budget holding what the ledger
recorded, every request answered or refused with a clear status within its deadline, every
service back to SERVING on its own (a killed one once started again) and answering again.
A check that breaks because of code this suite's owner may not change is marked
xfail(strict=True) in KNOWN with the evidence, so that it stays visible and a fix shows.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tokenrt_common.settings import load_settings
from tokenrt_testkit.procs import ServiceProcess
from tokenrt_usage import Publisher
from tokenrt_usage.events import new_event_id
from tokenrt_usage.testing import make_event

from .audit import Audit, classify, limit_state, reconcile, set_limits, user_scope
from .load import LoadGenerator, Outcome
from .stack import TENANTS, ChaosStack, Tenant


@dataclass(frozen=True)
class Timing:
    rate: float  # requests per second over all tenants
    before_s: float  # load before the fault
    fault_s: float  # how long NATS/Postgres/Redis stay down, or the provider keeps failing
    after_s: float  # load after the repair
    deadline_s: float  # each request's client deadline
    catchup_s: float  # longest wait for the ledger to show every answered request
    serving_limit_s: float  # longest wait for all six services to be SERVING again


SHORT = Timing(rate=12, before_s=2, fault_s=2, after_s=3, deadline_s=10, catchup_s=30,
               serving_limit_s=45)
LONG = Timing(rate=20, before_s=8, fault_s=8, after_s=12, deadline_s=10, catchup_s=90,
              serving_limit_s=90)
TIMING = LONG if os.environ.get("CHAOS_LONG") else SHORT

SERVICE_KILLS = ("counter", "budget", "cache", "compressor", "ledger", "router")
INFRA_STOPS = ("nats", "postgres", "redis")
PROVIDER_FAULTS = ("429", "500", "timeout")
PHASES = ([f"kill-{s}" for s in SERVICE_KILLS] + [f"restart-{k}" for k in INFRA_STOPS]
          + [f"provider-{f}" for f in PROVIDER_FAULTS])

CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "lost": lambda r: r["lost"] == 0,
    "double_counted": lambda r: r["double_counted"] == 0,
    "figures_match": lambda r: r["mismatched"] == 0,
    "hard_budget_not_overspent": lambda r: r["overspend"] == 0,
    "budget_matches_ledger": lambda r: r["budget_drift"] == 0,
    "clear_status_in_deadline": lambda r: r["unclear"] == 0 and r["late"] == 0,
    "back_serving": lambda r: r["serving_s"] is not None and not r["exited"]
    and r["recovery_s"] is not None,
}

# (phase, check) -> why it breaks, with the evidence; the fix belongs to another owner.
# These break only when a fault happens to land in a window of a few milliseconds, so they
# are not strict here; the tests at the end of this module hold each window open and are.
# None at present: kill-router's lost events and budget drift (the off-path flush window)
# are closed by the router's journal, restart-redis's drift by the budget's catch-up.
KNOWN: dict[tuple[str, str], str] = {}


def _params() -> list[Any]:
    out = []
    for phase in PHASES:
        for check in CHECKS:
            reason = KNOWN.get((phase, check))
            marks = [pytest.mark.xfail(strict=False, reason=reason)] if reason else []
            out.append(pytest.param(phase, check, marks=marks, id=f"{phase}-{check}"))
    return out


def _inject(stack: ChaosStack, phase: str, t: Timing) -> tuple[float, float | None]:
    """Cause the fault and repair it; (the moment the repair began, restart seconds)."""
    kind, _, what = phase.partition("-")
    if kind == "kill":
        stack.sigkill(what)
        repair = time.monotonic()
        return repair, stack.start(what)
    if kind == "restart":
        stack.stop_infra(what)
        time.sleep(t.fault_s)
        repair = time.monotonic()
        stack.start_infra(what)
        return repair, time.monotonic() - repair
    stack.sim_fault(what)
    time.sleep(t.fault_s)
    repair = time.monotonic()
    stack.sim_fault(None)
    return repair, None


def run_phase(stack: ChaosStack, phase: str, t: Timing) -> dict[str, Any]:
    user = f"u-{phase}"
    per_hard_tenant = t.rate / len(TENANTS) * (t.before_s + t.fault_s + t.after_s)
    hard_tokens = int(per_hard_tenant * 0.6 * 45)  # runs out about two thirds in
    limit_ids = asyncio.run(set_limits(stack.env["TOKENRT_BUDGET_ADDR"], TENANTS, user,
                                       hard_tokens))
    load = LoadGenerator(stack.env["TOKENRT_ROUTER_ADDR"], TENANTS, user, t.rate, t.deadline_s)
    load.start()
    try:
        time.sleep(t.before_s)
        repair, restart_s = _inject(stack, phase, t)
        serving_s, states = stack.wait_all_serving(t.serving_limit_s)
        exited = stack.exited()
        time.sleep(t.after_s)
    finally:
        outcomes = load.stop()  # also when the fault could not be repaired
    recovery_s = load.first_ok_after(repair)
    audit: Audit = classify(outcomes, t.deadline_s)
    audit = asyncio.run(reconcile(audit, outcomes, stack.env, TENANTS, user, limit_ids,
                                  t.catchup_s))
    result = audit.as_dict() | {"restart_s": restart_s, "recovery_s": recovery_s,
                                "serving_s": serving_s, "health": states, "exited": exited,
                                "rate": t.rate}
    for name in exited:  # leave a whole stack to the next phase, and say so
        stack.start(name)
    return result


@pytest.mark.parametrize(("phase", "check"), _params())
def test_fault(chaos_stack: ChaosStack, phase: str, check: str) -> None:
    results = chaos_stack.results
    if phase not in results:
        try:
            results[phase] = run_phase(chaos_stack, phase, TIMING)
        except (Exception, pytest.fail.Exception) as exc:  # a service that never came back
            results[phase] = {"error": f"{type(exc).__name__}: {exc}"}
            chaos_stack.repair()  # so that the next phase starts from a whole stack
    result = results[phase]
    assert "error" not in result, f"{phase} could not run: {result['error']}"
    examples = {k: v for k, v in result["examples"].items()}
    assert CHECKS[check](result), (
        f"{phase}: {check} broken; requests {result['requests']}, ok {result['ok']}, refused "
        f"{result['refused']}, lost {result['lost']}, double {result['double_counted']}, "
        f"mismatched {result['mismatched']}, overspend {result['overspend']}, budget drift "
        f"{result['budget_drift']} (reserved {result['hard_budget_reserved']}), unclear "
        f"{result['unclear']}, late {result['late']}, serving after {result['serving_s']} s "
        f"{result['health']}, exited {result['exited']}, recovery {result['recovery_s']} s; "
        f"examples {examples}")


async def _publish(env: dict[str, str], events: list[Any], outbox: Path) -> None:
    publisher = Publisher.from_settings(load_settings(env | {
        "TOKENRT_USAGE_OUTBOX_PATH": str(outbox)}))
    await publisher.start()
    try:
        assert await publisher.wait_ready(within=30)
        await publisher.publish_many(events)
        assert await publisher.flush(within=30)
    finally:
        await publisher.close()


def test_the_audit_sees_loss_doubling_and_wrong_figures(chaos_stack: ChaosStack,
                                                        tmp_path: Path) -> None:
    """The checks above can fail: an answer whose event never reached the ledger is lost,
    a second event for one request is double-counted, other figures are mismatched."""
    free = TENANTS[0]
    user = "u-audit"
    kept = make_event(org_id=free.org, project_id=free.project, user_id=user,
                      input_tokens=11, output_tokens=7, cost_nusd=1234)
    again = make_event(org_id=free.org, project_id=free.project, user_id=user)
    again.request_id = kept.request_id  # a second event for the same request
    wrong = make_event(org_id=free.org, project_id=free.project, user_id=user)
    asyncio.run(_publish(chaos_stack.env, [kept, again, wrong], tmp_path / "outbox.sqlite3"))

    def answer(event_id: str, cost: int) -> Outcome:
        return Outcome(f"r-{event_id}", free.org, False, 0.0, 0.1, "OK", event_id=event_id,
                       input_tokens=11, output_tokens=7, cost_nusd=cost)

    outcomes = [answer(kept.event_id, 1234), answer(wrong.event_id, 1),
                answer(new_event_id(), 5)]
    audit = _audit(chaos_stack, outcomes, free, user, {}, catchup_s=5)
    assert (audit.lost, audit.double_counted, audit.mismatched) == (1, 1, 1), audit.examples
    assert audit.ledger_events == 3


# --- the windows the phases above hit only by chance, held open so a kill lands in them ---

WIDE_FLUSH = {"TOKENRT_ROUTER_FLUSH_MS": "1000",  # the largest allowed; default 50 ms
              "TOKENRT_ROUTER_PROVIDER_TIMEOUT_SECONDS": "5"}


class WideRouter:
    """The tests below share one extra router with WIDE_FLUSH on a state folder of its own
    (a router start costs seconds); `kill()` SIGKILLs it, the next `get()` starts another
    on the same folder, which replays what the killed one left."""

    def __init__(self, stack: ChaosStack, folder: Path) -> None:
        self.stack = stack
        self.folder = folder
        self.proc: ServiceProcess | None = None

    def get(self) -> ServiceProcess:
        if self.proc is None or self.proc.process.poll() is not None:
            self.proc = self.stack.extra_router(self.folder, **WIDE_FLUSH)
        return self.proc

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.process.kill()
            self.proc.process.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


@pytest.fixture(scope="module")
def wide_router(chaos_stack: ChaosStack,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[WideRouter]:
    router = WideRouter(chaos_stack, tmp_path_factory.mktemp("wide-router"))
    yield router
    router.stop()


def _hard_limit(stack: ChaosStack, user: str) -> tuple[Tenant, dict[str, str]]:
    """The hard tenant, and a hard limit for `user` far from being reached."""
    hard = next(t for t in TENANTS if t.hard)
    return hard, asyncio.run(set_limits(stack.env["TOKENRT_BUDGET_ADDR"], (hard,), user,
                                        100_000))


def _audit(stack: ChaosStack, outcomes: list[Outcome], tenant: Tenant, user: str,
           limit_ids: dict[str, str], catchup_s: float = 10) -> Audit:
    return asyncio.run(reconcile(classify(outcomes, 20), outcomes, stack.env, (tenant,), user,
                                 limit_ids, catchup_limit_s=catchup_s))


def _complete_once(address: str, tenant: Tenant, user: str, first: int = 0) -> Outcome:
    """One answered Complete (a few tries: a loaded machine may time the provider out);
    request ids from `first` on."""
    load = LoadGenerator(address, (tenant,), user, rate=1.0, deadline_s=20)
    tried: list[tuple[str, str]] = []
    for n in range(first, first + 5):
        out = asyncio.run(load.once(tenant, n))
        if out.ok:
            return out
        tried.append((out.code, out.detail))
    raise AssertionError(f"no request was answered: {tried}")


def test_an_answered_request_survives_a_router_sigkill_right_after(
        chaos_stack: ChaosStack, wide_router: WideRouter) -> None:
    """Killed while the answered requests' events and settlements wait for their flush (held
    open for 1 s): the next router on the same state folder replays them from its journal,
    so the ledger has the events and the budget charged them and holds nothing. One unary
    Complete, one StreamComplete (its done message was sent)."""
    user = "u-router-window"
    hard, limit_ids = _hard_limit(chaos_stack, user)
    try:
        address = wide_router.get().address
        answered = [_complete_once(address, hard, user), _complete_once(address, hard, user, 2)]
    finally:
        wide_router.kill()
    assert [o.stream for o in answered] == [False, True], "load.py's request kinds changed"
    wide_router.get()  # same state folder: it replays the journal
    audit = _audit(chaos_stack, answered, hard, user, limit_ids)
    assert audit.lost == 0, audit.examples
    assert audit.budget_drift == 0 and audit.hard_budget_reserved == 0, audit.examples
    assert audit.hard_budget_used > 0, "nothing was charged: the settlement was not tested"


def test_a_settlement_made_while_the_budget_restarts_is_charged(
        chaos_stack: ChaosStack, wide_router: WideRouter) -> None:
    user = "u-settle-window"
    hard, limit_ids = _hard_limit(chaos_stack, user)
    try:
        answered = _complete_once(wide_router.get().address, hard, user)
        chaos_stack.sigkill("budget")  # the settlement is still waiting for its flush
        time.sleep(2.5)  # the flush (1 s) and its first three retries (~1.4 s) meet a dead port
        chaos_stack.start("budget")
        audit = _audit(chaos_stack, [answered], hard, user, limit_ids)
    finally:
        if chaos_stack.exited():
            chaos_stack.start("budget")
    assert audit.lost == 0
    assert audit.budget_drift == 0 and audit.hard_budget_reserved == 0, audit.examples


def test_usage_in_flight_when_redis_restarts_is_counted_after_the_rebuild(
        chaos_stack: ChaosStack, tmp_path: Path) -> None:
    """A request committed while NATS is down (its event in the router's outbox), then
    Redis back empty: the rebuild cannot see it, the catch-up adds it once the event
    reaches the ledger, and the request committed after the rebuild is not counted twice
    (issue 11)."""
    user = "u-rebuild-window"
    hard, limit_ids = _hard_limit(chaos_stack, user)
    address = chaos_stack.env["TOKENRT_ROUTER_ADDR"]
    chaos_stack.stop_infra("nats")
    try:
        first = _complete_once(address, hard, user)  # committed; its event in the outbox
        chaos_stack.stop_infra("redis")
        chaos_stack.start_infra("redis")
        second = _complete_once(address, hard, user, 10)  # Redis empty: rebuilt, then reserved
    finally:
        if "nats" not in chaos_stack.infra:
            chaos_stack.start_infra("nats")
        if "redis" not in chaos_stack.infra:
            chaos_stack.start_infra("redis")
    serving, states = chaos_stack.wait_all_serving(TIMING.serving_limit_s)
    assert serving is not None, states
    audit = _audit(chaos_stack, [first, second], hard, user, limit_ids, TIMING.catchup_s)
    assert (audit.lost, audit.double_counted) == (0, 0), audit.examples
    # The catch-up pass that adds the late event may come up to 16 intervals after the last
    # (passes that find nothing come ever less often).
    until = time.monotonic() + 16 * load_settings(chaos_stack.env).budget_catchup_interval_seconds
    while audit.budget_drift and time.monotonic() < until + 4:
        time.sleep(1)
        audit = _audit(chaos_stack, [first, second], hard, user, limit_ids, TIMING.catchup_s)
    assert audit.budget_drift == 0, audit.examples


def test_a_request_its_caller_gave_up_on_holds_no_budget(chaos_stack: ChaosStack,
                                                         wide_router: WideRouter) -> None:
    """A caller whose deadline passes while the provider answers leaves nothing reserved
    once the router is done with its request (checked because long phases under overload
    left reservations held at the end of their audit: those were requests still running);
    then the same for a stream whose first chunk is due after its caller's deadline (its
    reservation was held for its whole TTL, and no event recorded)."""
    user = "u-cancel-window"
    budget = chaos_stack.env["TOKENRT_BUDGET_ADDR"]
    hard, limit_ids = _hard_limit(chaos_stack, user)
    scope = user_scope(hard, user)
    router = wide_router.get()  # provider timeout 5 s: after the caller's 3 s deadline
    for model in ("gpt-4o-mini", "sim/gpt-4o-mini"):
        chaos_stack.sim_pace(model, 8000)
    held = 0
    try:
        load = LoadGenerator(router.address, (hard,), user, rate=1.0, deadline_s=3)
        load.start()
        until = time.monotonic() + 3
        while not held and time.monotonic() < until:  # reserved while the provider answers
            state = asyncio.run(limit_state(budget, scope, limit_ids[hard.org]))
            held = state.reserved if state is not None else 0
            time.sleep(0.1)
        outcomes = load.stop()  # each one's caller gives up after 3 s
        after = _unreserved(budget, scope, limit_ids[hard.org])
        stream = asyncio.run(load.once(hard, 2))  # (request 2 of a generator is a stream)
        after_stream = _unreserved(budget, scope, limit_ids[hard.org])
    finally:
        chaos_stack.sim_fault(None)
    assert held > 0, "the request was not reserved while in flight; nothing was tested"
    assert {o.code for o in outcomes} == {"DEADLINE_EXCEEDED"}, [o.detail for o in outcomes]
    assert after is not None and after.reserved == 0, after
    assert stream.stream and stream.code == "DEADLINE_EXCEEDED", stream
    assert after_stream is not None and after_stream.reserved == 0, after_stream


def _unreserved(budget: str, scope: Any, limit_id: str) -> Any:
    """The limit's state once nothing is reserved on it (a release is flushed within 1 s),
    or after 10 s."""
    state = asyncio.run(limit_state(budget, scope, limit_id))
    until = time.monotonic() + 10
    while state is not None and state.reserved and time.monotonic() < until:
        time.sleep(0.2)
        state = asyncio.run(limit_state(budget, scope, limit_id))
    return state
