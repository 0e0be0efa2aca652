"""SUMMARIZE through the router: a compressor process of ours, wired to the session stack's
router, budget, ledger and simulator, with a service API key of its own: the summaries are
charged to the tenant whose conversation they summarise."""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from compressor_chats import ide_conversation

from tokenrt.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    common_pb2,
    compressor_pb2,
    compressor_pb2_grpc,
    events_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from tokenrt_compressor.counting import CounterMeter
from tokenrt_compressor.routed import fit, tenant_tags, transcript
from tokenrt_testkit.procs import ServiceProcess, start_service
from tokenrt_testkit.stack import free_ports, with_fresh_ports
from tokenrt_testkit.waits import settled_limit

S = common_pb2
ORG = "cmp-sum-" + uuid.uuid4().hex[:8]  # the compressor key's tenant
CALLER = S.Tenant(org_id="acme-" + uuid.uuid4().hex[:6], project_id="web", user_id="ann")
SUMMARIZED = compressor_pb2.COMPRESSION_ACTION_KIND_SUMMARIZED
# sim/gpt-4.1-nano, nano-USD per token: input, cached input, output.
NANO_PRICES = (100, 25, 400)
DEAD_KEY = "trk_nobody_listens_there_" + uuid.uuid4().hex


def _create_key(stack, service: bool) -> router_pb2.CreateApiKeyResponse:  # type: ignore[no-untyped-def]
    """An API key of a fresh organization, made with the stack's bootstrap admin key: a
    service key (it may act for the tenants it summarises for) or a plain one."""
    admin = (stack.state_dir / "demo-api-key").read_text().strip()
    with grpc.insecure_channel(stack.env["TOKENRT_ROUTER_ADDR"]) as ch:
        return router_pb2_grpc.RouterServiceStub(ch).CreateApiKey(
            router_pb2.CreateApiKeyRequest(tenant=S.Tenant(org_id=ORG, project_id="summaries"),
                                           name="compressor", service=service),
            metadata=(("authorization", f"Bearer {admin}"),), timeout=30)


def _compressor(stack, tmp: Path, **overrides: str) -> ServiceProcess:  # type: ignore[no-untyped-def]
    env = {**with_fresh_ports(stack.env, "compressor"), **overrides}
    return start_service("compressor", env, tmp / "compressor.log")


@dataclass
class Compressors:
    routed: ServiceProcess  # summary calls to the stack's router with `key`, a service key
    key: str
    key_id: str
    down: ServiceProcess  # a key, but nothing listens at its router address
    plain: ServiceProcess  # summary calls with a plain key (not a service key)


@pytest.fixture(scope="module")
def compressors(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compressors]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("summary-router")
    made = _create_key(stack, service=True)
    plain = _create_key(stack, service=False).secret
    for name, secret in (("key", made.secret), ("dead-key", DEAD_KEY), ("plain-key", plain)):
        (tmp / name).write_text(secret + "\n")
        (tmp / name).chmod(0o600)
    (tmp / "down").mkdir()
    (tmp / "plain").mkdir()
    with ThreadPoolExecutor(3) as pool:  # the starts overlap: each loads every tokenizer
        routed = pool.submit(_compressor, stack, tmp,
                             TOKENRT_COMPRESSOR_SUMMARY_KEY_FILE=str(tmp / "key"))
        down = pool.submit(_compressor, stack, tmp / "down",
                           TOKENRT_COMPRESSOR_SUMMARY_KEY_FILE=str(tmp / "dead-key"),
                           TOKENRT_ROUTER_ADDR=f"127.0.0.1:{free_ports(1)[0]}")
        plain_proc = pool.submit(_compressor, stack, tmp / "plain",
                                 TOKENRT_COMPRESSOR_SUMMARY_KEY_FILE=str(tmp / "plain-key"))
        procs = Compressors(routed.result(), made.secret, made.api_key.api_key_id,
                            down.result(), plain_proc.result())
    yield procs
    procs.routed.stop()
    procs.down.stop()
    procs.plain.stop()


def sim_requests(stack) -> int:  # type: ignore[no-untyped-def]
    base = stack.env["TOKENRT_ROUTER_SIM_BASE_URL"].removesuffix("/v1")
    with urllib.request.urlopen(base + "/sim/stats", timeout=5) as r:
        return int(json.load(r)["requests"])


async def compress(address: str, chat: list[S.Message], target: int, session: str,
                   **options: object) -> compressor_pb2.CompressResponse:
    async with grpc.aio.insecure_channel(address) as ch:
        return await compressor_pb2_grpc.CompressorServiceStub(ch).Compress(
            compressor_pb2.CompressRequest(
                model="gpt-4o", messages=chat, target_tokens=target, session_id=session,
                tenant=CALLER, strategy=S.COMPRESSION_STRATEGY_SUMMARIZE,
                options=S.CompressionOptions(**options)), timeout=60)  # type: ignore[arg-type]


def summary_action(answer: compressor_pb2.CompressResponse) -> compressor_pb2.CompressionAction:
    found = [a for a in answer.report.actions if a.kind == SUMMARIZED]
    assert len(found) == 1, answer.report
    return found[0]


async def ledger_events(stack, org: str, session: str, n: int) -> list[events_pb2.UsageEvent]:  # type: ignore[no-untyped-def]
    """An organization's events of one session: at least n, or what came within ~20 s."""
    async with grpc.aio.insecure_channel(stack.env["TOKENRT_LEDGER_ADDR"]) as ch:
        stub = ledger_pb2_grpc.LedgerServiceStub(ch)
        for _ in range(100):
            r = await stub.ListEvents(ledger_pb2.ListEventsRequest(
                filter=ledger_pb2.UsageFilter(org_id=org, session_id=session), page_size=50),
                timeout=5)
            if len(r.events) >= n:
                return list(r.events)
            await asyncio.sleep(0.2)
    return list(r.events)


async def test_router_summary_costs_once_then_comes_from_the_session_cache(
        stack, compressors: Compressors, meter: CounterMeter) -> None:  # type: ignore[no-untyped-def]
    proc, key = compressors.routed, compressors.key
    chat, _ = ide_conversation(random.Random(21), files=5, turns=10, lines=20, asked=1)
    target = meter.total(chat, []) // 2
    before = sim_requests(stack)
    first = await compress(proc.address, chat, target, "s-routed", allow_summarize=True)
    assert sim_requests(stack) == before + 1
    r = first.report
    action = summary_action(first)
    assert "sim/gpt-4.1-nano" in action.note and "extractive" not in r.reason
    summary = first.messages[action.output_index].content[0].text
    assert summary.startswith("[Summary of") and "[tokenrt simulator" in summary
    assert r.compressed_tokens == meter.total(list(first.messages), []) <= target
    u = r.summary_usage
    assert u.input_tokens > 0 and u.output_tokens > 0
    inp, cached, out = NANO_PRICES
    assert r.summary_cost_nusd == ((u.input_tokens - u.cached_input_tokens) * inp
                                   + u.cached_input_tokens * cached + u.output_tokens * out)

    again = await compress(proc.address, chat, target, "s-routed", allow_summarize=True)
    assert sim_requests(stack) == before + 1  # no second router call
    assert list(again.messages) == list(first.messages)
    assert "from the session cache" in summary_action(again).note
    assert again.report.summary_cost_nusd == 0 and again.report.summary_usage.input_tokens == 0

    # The call is in the ledger under the caller's tenant and session, made by the
    # compressor's service key; none under the key's own organization. The router
    # compressed nothing (compression OFF: no loop back to a compressor).
    (event,) = await ledger_events(stack, CALLER.org_id, "s-routed", 1)
    assert (event.org_id, event.project_id, event.user_id, event.session_id) == (
        CALLER.org_id, CALLER.project_id, CALLER.user_id, "s-routed")
    assert event.api_key_id == compressors.key_id
    assert event.served_model == "sim/gpt-4.1-nano" and event.cost_nusd == r.summary_cost_nusd
    assert event.tags["tokenrt.origin"] == "compressor.summary"
    assert not event.compression_applied
    assert await ledger_events(stack, ORG, "s-routed", 0) == []
    assert key not in proc.log.read_text()


async def test_summaries_spend_the_callers_budget(stack, compressors: Compressors,  # type: ignore[no-untyped-def]
                                                  meter: CounterMeter) -> None:
    """A hard cost limit on the caller's session: the summary is charged to it, and once it
    is spent the router refuses the next summary (the extractive one stands in)."""
    session = "s-budget-" + uuid.uuid4().hex[:6]
    scope = S.Scope(kind=S.SCOPE_KIND_SESSION, org_id=CALLER.org_id,
                    project_id=CALLER.project_id, user_id=CALLER.user_id, session_id=session)
    chats = [ide_conversation(random.Random(seed), files=5, turns=10, lines=20, asked=1)[0]
             for seed in (24, 25)]
    async with grpc.aio.insecure_channel(stack.env["TOKENRT_BUDGET_ADDR"]) as ch:
        budget = budget_pb2_grpc.BudgetServiceStub(ch)
        limit = (await budget.SetLimit(budget_pb2.SetLimitRequest(limit=budget_pb2.Limit(
            scope=scope, metric=S.LIMIT_METRIC_COST, period=S.LIMIT_PERIOD_TOTAL,
            limit=10**12, action=S.LIMIT_ACTION_DENY, name="summaries")), timeout=10)).limit
        first = await compress(compressors.routed.address, chats[0],
                               meter.total(chats[0], []) // 2, session, allow_summarize=True)
        cost = first.report.summary_cost_nusd
        assert cost > 0 and "sim/gpt-4.1-nano" in summary_action(first).note
        assert (await settled_limit(budget, scope)).used == cost
        limit.limit = cost
        await budget.SetLimit(budget_pb2.SetLimitRequest(limit=limit), timeout=10)
        second = await compress(compressors.routed.address, chats[1],
                                meter.total(chats[1], []) // 2, session, allow_summarize=True)
    note = summary_action(second).note
    assert "extractive fallback: router RESOURCE_EXHAUSTED" in note, note
    assert second.report.summary_cost_nusd == 0


async def test_a_plain_key_cannot_charge_the_caller(stack, compressors: Compressors,  # type: ignore[no-untyped-def]
                                                    meter: CounterMeter) -> None:
    """A compressor configured with a key that is not a service key: the router refuses to
    let it act for the caller (PERMISSION_DENIED), so no summary is charged to anyone."""
    chat, _ = ide_conversation(random.Random(26), files=5, turns=10, lines=20, asked=1)
    before = sim_requests(stack)
    answer = await compress(compressors.plain.address, chat, meter.total(chat, []) // 2,
                            "s-plain", allow_summarize=True)
    note = summary_action(answer).note
    assert "extractive fallback: router PERMISSION_DENIED" in note, note
    assert "not a service key" in note and answer.report.summary_cost_nusd == 0
    assert sim_requests(stack) == before


async def test_summary_options_and_router_refusals(compressors: Compressors,
                                                   meter: CounterMeter) -> None:
    proc = compressors.routed
    chat, _ = ide_conversation(random.Random(22), files=5, turns=10, lines=20, asked=1)
    target = meter.total(chat, []) // 2
    off = await compress(proc.address, chat, target, "s-off")
    assert "extractive; options.allow_summarize is off" in summary_action(off).note
    assert off.report.summary_cost_nusd == 0
    refused = await compress(proc.address, chat, target, "s-refused", allow_summarize=True,
                             summary_model="sim/no-such-model")
    note = summary_action(refused).note
    assert "extractive fallback: router NOT_FOUND" in note and "no-such-model" in note
    assert refused.report.summary_cost_nusd == 0
    assert refused.report.compressed_tokens == meter.total(list(refused.messages), []) <= target


async def test_router_down_falls_back_to_extractive(compressors: Compressors,
                                                    meter: CounterMeter) -> None:
    proc = compressors.down
    chat, _ = ide_conversation(random.Random(23), files=5, turns=10, lines=20, asked=1)
    target = meter.total(chat, []) // 2
    for session in ("s-down-1", "s-down-1", "s-down-2"):
        answer = await compress(proc.address, chat, target, session, allow_summarize=True)
        action = summary_action(answer)
        assert "extractive fallback: router UNAVAILABLE" in action.note, action.note
        assert "from the session cache" not in action.note  # a fallback is not cached
        assert answer.report.summary_cost_nusd == 0
        assert answer.report.compressed_tokens <= target
    assert "not retried" in action.note  # the cool-down spares the dead router
    assert DEAD_KEY not in proc.log.read_text()


def test_summary_request_parts_respect_their_bounds(meter: CounterMeter) -> None:
    span = [S.Message(role=S.ROLE_TOOL, tool_call_id="c", content=[S.ContentPart(
        text=f"# src/m{i}.py\n" + "def f():\n    return 1\n" * 200)]) for i in range(30)]
    text = transcript(span, 9000)
    assert len(text) <= 9000
    assert all(f"[tool] # src/m{i}.py" in text for i in range(30))  # each keeps its start
    assert transcript(span[:1], 10**6) == "[tool] " + span[0].content[0].text
    long = "word " * 3000
    cut = fit(long, 100, meter.text)
    assert meter.text(cut) <= 100 < meter.text(long) and long.startswith(cut)
    tags = tenant_tags(S.Tenant(org_id="é" * 300, project_id="p"), "s")
    assert all(len(v.encode()) <= 256 for v in tags.values())
    assert tags["tokenrt.origin"] == "compressor.summary" and "tokenrt.summary_for.user" not in tags
