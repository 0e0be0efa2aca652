"""`tokenrt demo`: an IDE session through the router's gRPC API that shows each capability
once, then what the ledger recorded.

Each run is on its own: with the demo key (an admin key `tokenrt up` made) it creates an
API key for a fresh organization `demo-<run>` and revokes it at the end; with a key that
cannot create keys it stays in that key's project and uses users and sessions named after
the run. Budgets are set on those users (budget service SetLimit), so runs never see each
other's limits, spend or cache entries.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from tokenrt.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    common_pb2,
    counter_pb2,
    counter_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from tokenrt_cli import demo_script as script
from tokenrt_common.client import open_channel
from tokenrt_common.settings import Settings

T = common_pb2
DETAIL_KEY = "tokenrt-error-detail-bin"  # tokenrt_router.refusal.DETAIL_KEY
MAX_OUTPUT = 200
LEDGER_WAIT_SECONDS = 20.0
CALL_TIMEOUT = 120.0
# The bob step aims the first reservation at 85 % of the limit: past the 80 % warning.
WARNING_AIM_BP = 8500

Say = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why."""


@dataclass
class Sent:
    """One request the demo sent, as the router answered it."""

    step: str
    user: str
    session: str
    requested_model: str
    served_model: str = ""
    degraded_from: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nusd: int = 0
    cache_hit: bool = False
    cache_saved_tokens: int = 0
    cache_saved_cost_nusd: int = 0
    streamed: bool = False
    status: str = "ok"  # ok, cache_hit, denied, error
    note: str = ""


@dataclass
class Summary:
    """Everything the demo showed, as `--json` prints it."""

    run_id: str
    org: str
    project: str
    provider: str
    model: str
    premium_model: str
    fresh_org: bool
    requests: list[Sent] = field(default_factory=list)
    exact: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    warning: dict[str, Any] = field(default_factory=dict)
    degrade: dict[str, Any] = field(default_factory=dict)
    denial: dict[str, Any] = field(default_factory=dict)
    compression: dict[str, Any] = field(default_factory=dict)
    selection: list[dict[str, Any]] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    ledger: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def missing(self) -> list[str]:
        """Capabilities the run could not show."""
        checks = {"exact token counts": bool(self.exact.get("matches")),
                  "a cache hit": bool(self.cache.get("hit")),
                  "a budget warning": bool(self.warning),
                  "a degrade": bool(self.degrade.get("degraded_from")),
                  "a denial": bool(self.denial),
                  "a compression": bool(self.compression.get("ratio_bp")),
                  "model selection": bool(self.selection),
                  "the ledger's figures": bool(self.ledger.get("complete"))}
        return [name for name, ok in checks.items() if not ok]


def enum_name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


def reason_name(value: int) -> str:
    return enum_name(T.ErrorReason, value, "ERROR_REASON_")


def _detail(exc: grpc.aio.AioRpcError) -> common_pb2.ErrorDetail | None:
    for k, v in exc.trailing_metadata() or ():
        if k == DETAIL_KEY:
            return T.ErrorDetail.FromString(v)
    return None


def _stamp(ts: Any) -> str:
    return ts.ToDatetime(tzinfo=UTC).isoformat() if ts.seconds or ts.nanos else ""


class Demo:
    """One run. `step` is called with each step's title as it starts."""

    def __init__(self, settings: Settings, key: str, provider: str, model: str,
                 premium_model: str, step: Say) -> None:
        self.s = settings
        self.key = key
        self.step = step
        self.run = secrets.token_hex(3)
        self.workspace = f"demo-{self.run}"
        self.summary = Summary(self.run, "", "", provider, model, premium_model, False)
        self._channels = {n: open_channel(settings, n)
                          for n in ("router", "budget", "ledger", "counter")}
        self.router = router_pb2_grpc.RouterServiceStub(self._channels["router"])
        self.budget = budget_pb2_grpc.BudgetServiceStub(self._channels["budget"])
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(self._channels["ledger"])
        self.counter = counter_pb2_grpc.CounterServiceStub(self._channels["counter"])
        self._admin_key = key
        self._created_key_id = ""
        self._refusal: tuple[grpc.aio.AioRpcError, common_pb2.ErrorDetail | None] | None = None
        self._first = router_pb2.CompleteRequest()
        self.users: dict[str, str] = {}

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()

    # -- plumbing ---------------------------------------------------------------------

    def _meta(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),)

    def user(self, name: str) -> str:
        return self.users.setdefault(name, name if self.summary.fresh_org
                                     else f"{name}-{self.run}")

    def _request(self, user: str, session: str, messages: list[common_pb2.Message],
                 model: str, **prefs: Any) -> router_pb2.CompleteRequest:
        req = router_pb2.CompleteRequest(
            user_id=self.user(user), session_id=f"{session}-{self.run}", messages=messages,
            preferences=router_pb2.RoutingPreferences(preferred_model=model, **prefs),
            tags={"demo_run": self.run})
        req.sampling.temperature = 0.0
        req.sampling.max_output_tokens = MAX_OUTPUT
        return req

    async def send(self, step: str, req: router_pb2.CompleteRequest,
                   stream: bool = False) -> tuple[Sent, router_pb2.Completion | None]:
        """One Complete (or StreamComplete); a refusal is a Sent with status denied/error."""
        prefs = req.preferences
        sent = Sent(step, req.user_id, req.session_id,
                    prefs.preferred_model or prefs.forced_model, streamed=stream)
        self.summary.requests.append(sent)
        try:
            if stream:
                done = None
                async for ev in self.router.StreamComplete(
                        router_pb2.StreamCompleteRequest(request=req), metadata=self._meta(),
                        timeout=CALL_TIMEOUT):
                    if ev.WhichOneof("event") == "done":
                        done = ev.done
                if done is None:
                    raise DemoError("the router's stream ended without a done event")
                c = done
            else:
                c = (await self.router.Complete(req, metadata=self._meta(),
                                                timeout=CALL_TIMEOUT)).completion
        except grpc.aio.AioRpcError as exc:
            detail = _detail(exc)
            sent.status = "denied" if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED \
                else "error"
            sent.note = reason_name(detail.reason) if detail else exc.code().name
            if sent.status == "error":
                raise DemoError(f"{step}: the router answered {exc.code().name}: "
                                f"{exc.details()}") from None
            self._refusal = (exc, detail)
            return sent, None
        sent.served_model = c.served_model
        sent.degraded_from = c.degraded_from_model
        sent.input_tokens = c.usage.input_tokens
        sent.output_tokens = c.usage.output_tokens
        sent.cost_nusd = c.cost_nusd
        sent.cache_hit = c.cache.hit
        sent.cache_saved_tokens = c.cache.saved_tokens
        sent.cache_saved_cost_nusd = c.cache.saved_cost_nusd
        sent.status = "cache_hit" if c.cache.hit else "ok"
        return sent, c

    # -- the run ----------------------------------------------------------------------

    async def tenant(self) -> None:
        """A fresh organization for this run when the key may create keys."""
        self.step("tenant")
        org, project = f"demo-{self.run}", "ide"
        try:
            resp = await self.router.CreateApiKey(router_pb2.CreateApiKeyRequest(
                tenant=T.Tenant(org_id=org, project_id=project),
                name=f"tokenrt demo run {self.run}"), metadata=self._meta(), timeout=30)
        except grpc.aio.AioRpcError:
            # Not an admin key, or no key management: stay in the key's own tenant.
            resp = None
        if resp is not None and resp.secret:
            self.key = resp.secret
            self._created_key_id = resp.api_key.api_key_id
            self.summary.fresh_org = True
            self.summary.org, self.summary.project = org, project
            return
        probe = router_pb2.SelectModelRequest(request=self._request(
            "alice", "probe", script.conversation(self.workspace, "hello"),
            self.summary.model))
        try:
            await self.router.SelectModel(probe, metadata=self._meta(), timeout=30)
        except grpc.aio.AioRpcError as exc:
            raise DemoError(f"the router refused the API key: {exc.code().name}: "
                            f"{exc.details()}") from None
        # The key's own tenant: learnt from the ledger's record of the first request.

    async def revoke(self) -> None:
        if not self._created_key_id:
            return
        try:
            await self.router.RevokeApiKey(router_pb2.RevokeApiKeyRequest(
                api_key_id=self._created_key_id),
                metadata=(("authorization", f"Bearer {self._admin_key}"),), timeout=30)
        except grpc.aio.AioRpcError:
            pass  # the run's key stays valid; it spends only for the run's organization

    async def exact_tokens(self) -> None:
        self.step("exact input and output tokens per request")
        m = self.summary.model
        reqs = [self._request("alice", "edit", script.conversation(self.workspace, p), m)
                for p in script.EDIT_PROMPTS]
        counted = await self.counter.CountMessages(counter_pb2.CountMessagesRequest(
            model=m, messages=reqs[0].messages, sampling=reqs[0].sampling), timeout=30)
        first, c = await self.send("tokens", reqs[0])
        if not self.summary.org and c is not None:
            await self._learn_tenant(c.event_id)
        await self.send("tokens", reqs[1])
        await self.send("tokens", reqs[2], stream=True)
        self.summary.exact = {
            "counted_input_tokens": counted.input_tokens,
            "reported_input_tokens": first.input_tokens,
            "exactness": enum_name(T.Exactness, counted.accuracy.exactness, "EXACTNESS_"),
            "matches": counted.input_tokens == first.input_tokens}
        self._first = reqs[0]

    async def _learn_tenant(self, event_id: str) -> None:
        deadline = time.monotonic() + LEDGER_WAIT_SECONDS
        while True:
            try:
                e = (await self.ledger.GetEvent(ledger_pb2.GetEventRequest(event_id=event_id),
                                                timeout=30)).event
                self.summary.org, self.summary.project = e.org_id, e.project_id
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise DemoError("cannot tell the API key's organization: the ledger has "
                                    f"not recorded the first request ({exc.code().name})"
                                    ) from None
            await asyncio.sleep(0.1)

    async def cache_hit(self) -> None:
        self.step("the same request again: a cache hit")
        sent = Sent("cache", "", "", "")
        for _ in range(10):  # the first answer is stored off the request path, within ms
            await asyncio.sleep(0.3)
            sent, _c = await self.send("cache", self._first)
            if sent.cache_hit:
                break
        self.summary.cache = {"hit": sent.cache_hit, "saved_tokens": sent.cache_saved_tokens,
                              "saved_cost_nusd": sent.cache_saved_cost_nusd,
                              "served_model": sent.served_model}

    async def _limit(self, user: str, metric: int, limit: int, action: int, name: str) -> None:
        scope = T.Scope(kind=T.SCOPE_KIND_USER, org_id=self.summary.org,
                        project_id=self.summary.project, user_id=self.user(user))
        await self.budget.SetLimit(budget_pb2.SetLimitRequest(limit=budget_pb2.Limit(
            scope=scope, metric=metric, period=T.LIMIT_PERIOD_DAY, limit=limit, action=action,
            name=name)), timeout=30)

    async def budget_warning(self) -> None:
        self.step("a budget warning")
        req = self._request("bob", "docs", script.conversation(self.workspace,
                                                               script.WARNING_PROMPT),
                            self.summary.model)
        counted = await self.counter.CountMessages(counter_pb2.CountMessagesRequest(
            model=self.summary.model, messages=req.messages, sampling=req.sampling), timeout=30)
        estimate = counted.input_tokens + MAX_OUTPUT
        limit = math.ceil(estimate * 10_000 / WARNING_AIM_BP)
        await self._limit("bob", T.LIMIT_METRIC_TOKENS, limit, T.LIMIT_ACTION_ALLOW,
                          "bob's daily tokens (demo)")
        for i in range(3):
            if i:
                req.messages[-1].content[0].text += " Keep it short."
            _sent, c = await self.send("warning", req)
            if c is not None and c.budget.warnings:
                w = c.budget.warnings[0]
                self.summary.warning = {
                    "user": self.user("bob"), "metric": "tokens", "limit": w.limit,
                    "used": w.used, "reserved": w.reserved,
                    "utilization_bp": w.utilization_bp,
                    "level": enum_name(T.BudgetLevel, w.level, "BUDGET_LEVEL_"),
                    "after_requests": i + 1}
                return

    async def degrade(self) -> None:
        self.step("a degrade to a cheaper model")
        premium = self.summary.premium_model
        req = self._request("carol", "review", script.conversation(self.workspace,
                                                                   script.DEGRADE_PROMPT),
                            premium)
        sel = await self.router.SelectModel(router_pb2.SelectModelRequest(request=req),
                                            metadata=self._meta(), timeout=30)
        estimate = next((c.estimated_cost_nusd for c in sel.candidates
                         if c.model == sel.model), 0) or 2
        limit = max(1, estimate // 2)
        await self._limit("carol", T.LIMIT_METRIC_COST, limit, T.LIMIT_ACTION_DEGRADE,
                          "carol's daily spend (demo)")
        sent, c = await self.send("degrade", req)
        self.summary.degrade = {
            "user": self.user("carol"), "requested_model": premium,
            "served_model": sent.served_model, "degraded_from": sent.degraded_from,
            "limit_nusd": limit, "estimated_cost_nusd": estimate,
            "decision": enum_name(T.BudgetDecision, c.budget.decision, "BUDGET_DECISION_")
            if c else ""}

    async def denial(self) -> None:
        self.step("a denial by a hard limit")
        await self._limit("dave", T.LIMIT_METRIC_REQUESTS, 2, T.LIMIT_ACTION_DENY,
                          "dave's daily requests (demo)")
        self._refusal = None
        for prompt in script.DENY_PROMPTS:
            sent, _c = await self.send("denial", self._request(
                "dave", "rename", script.conversation(self.workspace, prompt),
                self.summary.model))
            if sent.status == "denied" and self._refusal is not None:
                exc, d = self._refusal
                self.summary.denial = {
                    "user": self.user("dave"), "code": exc.code().name,
                    "reason": reason_name(d.reason) if d else "", "message": exc.details(),
                    "limit": d.limit if d else 0, "remaining": d.remaining if d else 0,
                    "unit": d.unit if d else "", "reset_at": _stamp(d.reset_at) if d else "",
                    "after_requests": len([s for s in self.summary.requests
                                           if s.step == "denial"])}
                return

    async def compression(self) -> None:
        self.step("a compressed long context")
        messages = script.long_conversation(self.workspace)
        req = self._request("alice", "long", messages, self.summary.model)
        counted = await self.counter.CountMessages(counter_pb2.CountMessagesRequest(
            model=self.summary.model, messages=messages), timeout=30)
        target = max(200, counted.input_tokens // 4)
        req.preferences.compression.mode = router_pb2.COMPRESSION_MODE_ALWAYS
        req.preferences.compression.target_tokens = target
        sent, c = await self.send("compression", req)
        if c is None or not c.HasField("compression"):
            return
        r = c.compression
        self.summary.compression = {
            "original_tokens": r.original_tokens, "compressed_tokens": r.compressed_tokens,
            "target_tokens": r.target_tokens, "saved_tokens": r.saved_tokens,
            "ratio_bp": r.ratio_bp, "saved_cost_nusd": r.saved_cost_nusd,
            "strategy": enum_name(T.CompressionStrategy, r.strategy_used,
                                  "COMPRESSION_STRATEGY_"),
            "reason": r.reason, "billed_input_tokens": sent.input_tokens}

    async def selection(self) -> None:
        self.step("model selection and its reasons")
        for prompt in script.SELECT_PROMPTS:
            req = self._request("alice", "select", script.conversation(self.workspace, prompt),
                                "")
            r = await self.router.SelectModel(router_pb2.SelectModelRequest(request=req),
                                              metadata=self._meta(), timeout=30)
            top = [{"model": c.model, "score": c.score, "eligible": c.eligible,
                    "estimated_cost_nusd": c.estimated_cost_nusd} for c in r.candidates[:3]]
            self.summary.selection.append({
                "prompt": prompt, "model": r.model,
                "task": enum_name(T.TaskType, r.selection.task_type, "TASK_TYPE_"),
                "complexity": enum_name(T.Complexity, r.selection.complexity, "COMPLEXITY_"),
                "reason": r.selection.reason, "input_tokens": r.input_tokens,
                "candidates": top})

    async def ledger_report(self, began: datetime) -> None:
        self.step("what the ledger recorded")
        mine = self.summary.requests
        self.summary.sent = {
            "requests": len(mine), "input_tokens": sum(s.input_tokens for s in mine),
            "output_tokens": sum(s.output_tokens for s in mine),
            "cost_nusd": sum(s.cost_nusd for s in mine),
            "cache_saved_cost_nusd": sum(s.cache_saved_cost_nusd for s in mine)}
        users = set(self.users.values())
        f = ledger_pb2.UsageFilter(org_id=self.summary.org, project_id=self.summary.project)
        f.start_time.FromDatetime(began - timedelta(seconds=5))
        rows: list[ledger_pb2.UsageRow] = []
        deadline = time.monotonic() + LEDGER_WAIT_SECONDS
        while True:
            # The ledger reads minute rollups and rounds `end` down to the minute.
            f.end_time.FromDatetime(datetime.now(UTC) + timedelta(minutes=1))
            resp = await self.ledger.QueryUsage(ledger_pb2.QueryUsageRequest(
                filter=f, page_size=1000, group_by=[
                    ledger_pb2.USAGE_DIMENSION_USER, ledger_pb2.USAGE_DIMENSION_MODEL]),
                timeout=30)
            rows = [r for r in resp.rows if r.user_id in users and r.totals.requests]
            if sum(r.totals.requests for r in rows) >= len(mine) \
                    or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        self.summary.ledger = ledger_figures(rows, len(mine))
        self.summary.ledger["tokens_per_hour"] = await self._series()

    async def _series(self) -> list[dict[str, Any]]:
        """Tokens per hour over the last 12 hours, every organization of the stack."""
        now = datetime.now(UTC)
        first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=11)
        f = ledger_pb2.UsageFilter()
        f.start_time.FromDatetime(first)
        f.end_time.FromDatetime(now + timedelta(minutes=1))
        rep = await self.ledger.GetReport(ledger_pb2.GetReportRequest(
            filter=f, series_granularity=ledger_pb2.TIME_GRANULARITY_HOUR), timeout=30)
        found = {r.bucket_start.ToDatetime(tzinfo=UTC): r.totals for r in rep.series}
        hours = [first + timedelta(hours=i) for i in range(12)]
        return [{"hour": h.isoformat(),
                 "tokens": found[h].usage.input_tokens + found[h].usage.output_tokens
                 if h in found else 0,
                 "cost_nusd": found[h].cost_nusd if h in found else 0} for h in hours]


def ledger_figures(rows: list[ledger_pb2.UsageRow], expected: int) -> dict[str, Any]:
    """Totals, cost per model and per user of the run's rows (QueryUsage by user, model)."""
    total = {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_nusd": 0,
             "cache_hit_requests": 0, "denied_requests": 0, "degraded_requests": 0,
             "cache_saved_cost_nusd": 0, "compression_saved_tokens": 0}
    by_model: dict[str, dict[str, int]] = {}
    by_user: dict[str, dict[str, int]] = {}
    for r in rows:
        t = r.totals
        figures = {"requests": t.requests, "input_tokens": t.usage.input_tokens,
                   "output_tokens": t.usage.output_tokens, "cost_nusd": t.cost_nusd}
        for k, v in figures.items():
            total[k] += v
        total["cache_hit_requests"] += t.cache_hit_requests
        total["denied_requests"] += t.denied_requests
        total["degraded_requests"] += t.degraded_requests
        total["cache_saved_cost_nusd"] += t.cache_saved_cost_nusd
        total["compression_saved_tokens"] += t.compression_saved_tokens
        for table, name in ((by_model, r.model or "(refused)"), (by_user, r.user_id)):
            agg = table.setdefault(name, dict.fromkeys(figures, 0))
            for k, v in figures.items():
                agg[k] += v

    def ranked(table: dict[str, dict[str, int]], key: str) -> list[dict[str, Any]]:
        return [{key: k, **v} for k, v in sorted(table.items(),
                                                 key=lambda kv: -kv[1]["cost_nusd"])]
    return {"complete": total["requests"] >= expected, "total": total,
            "by_model": ranked(by_model, "model"), "by_user": ranked(by_user, "user")}


async def run_demo(settings: Settings, key: str, provider: str, model: str,
                   premium_model: str, step: Say) -> Summary:
    began = datetime.now(UTC)
    clock = time.monotonic()
    demo = Demo(settings, key, provider, model, premium_model, step)
    try:
        await demo.tenant()
        await demo.exact_tokens()
        await demo.cache_hit()
        await demo.budget_warning()
        await demo.degrade()
        await demo.denial()
        await demo.compression()
        await demo.selection()
        await demo.ledger_report(began)
    except grpc.aio.AioRpcError as exc:
        raise DemoError(f"a call failed: {exc.code().name}: {exc.details()}") from None
    finally:
        await demo.revoke()
        await demo.close()
    demo.summary.seconds = round(time.monotonic() - clock, 2)
    return demo.summary


STEPS = 9  # tenant, tokens, cache, warning, degrade, denial, compression, selection, ledger
