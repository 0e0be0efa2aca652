"""`tokenrt demo`, `report` and `top` on the session stack (real services, the simulator
`tokenrt up` started, the demo key it wrote), checked against the ledger itself."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from tokenrt.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from tokenrt_cli import demokey
from tokenrt_cli.report import ledger_part
from tokenrt_testkit.stack import ROOT, TOKENRT, Stack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def demo(stack: Stack) -> dict[str, Any]:
    """One demo run, as `--json` summarised it."""
    began = time.monotonic()
    done = stack.cli("demo", "--provider", "sim", "--json", timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    print(f"\ndemo: {summary['seconds']} s of calls, {time.monotonic() - began:.1f} s with "
          "the command's start-up")
    return summary


async def _ledger_rows(stack: Stack, org: str, project: str,
                       since: datetime) -> list[ledger_pb2.UsageRow]:
    f = ledger_pb2.UsageFilter(org_id=org, project_id=project)
    f.start_time.FromDatetime(since)
    f.end_time.FromDatetime(datetime.now(UTC) + timedelta(minutes=1))
    async with grpc.aio.insecure_channel(stack.settings.endpoint("ledger").address) as ch:
        resp = await ledger_pb2_grpc.LedgerServiceStub(ch).QueryUsage(
            ledger_pb2.QueryUsageRequest(filter=f, page_size=1000, group_by=[
                ledger_pb2.USAGE_DIMENSION_USER, ledger_pb2.USAGE_DIMENSION_MODEL]))
    return list(resp.rows)


async def test_demo_shows_every_capability_and_the_ledger_has_what_it_sent(
        stack: Stack, demo: dict[str, Any]) -> None:
    assert demo["exact"]["matches"] and demo["exact"]["counted_input_tokens"] > 0
    assert demo["cache"]["hit"] and demo["cache"]["saved_cost_nusd"] > 0
    assert demo["warning"]["level"] in ("warning", "critical")
    assert 8000 <= demo["warning"]["utilization_bp"] < 10000
    assert demo["degrade"]["degraded_from"] == "sim/gpt-4o"
    assert demo["degrade"]["served_model"] == "sim/gpt-4o-mini"
    assert demo["denial"]["code"] == "RESOURCE_EXHAUSTED"
    assert demo["denial"]["reason"] == "budget_exceeded" and demo["denial"]["limit"] == 2
    z = demo["compression"]
    assert 0 < z["ratio_bp"] < 10_000 and z["compressed_tokens"] <= z["target_tokens"]
    assert z["billed_input_tokens"] == z["compressed_tokens"]
    assert {s["task"] for s in demo["selection"]} >= {"code_completion", "refactor"}
    assert all(s["model"] and s["reason"] for s in demo["selection"])
    # Every request sent is in the ledger, token for token and nano-dollar for nano-dollar,
    # by the demo's own reading and by ours.
    sent = demo["sent"]
    assert sent["requests"] == len(demo["requests"]) >= 10
    total = demo["ledger"]["total"]
    assert {k: total[k] for k in sent if k in total} == {k: sent[k] for k in sent if k in total}
    assert total["cache_hit_requests"] == 1 and total["denied_requests"] == 1
    assert total["degraded_requests"] == 1
    users = {r["user"] for r in demo["requests"]}
    rows = [r for r in await _ledger_rows(stack, demo["org"], demo["project"],
                                          datetime.now(UTC) - timedelta(hours=1))
            if r.user_id in users]
    assert sum(r.totals.requests for r in rows) == sent["requests"]
    assert sum(r.totals.usage.input_tokens for r in rows) == sent["input_tokens"]
    assert sum(r.totals.usage.output_tokens for r in rows) == sent["output_tokens"]
    assert sum(r.totals.cost_nusd for r in rows) == sent["cost_nusd"] > 0
    by_model = {m["model"]: m["cost_nusd"] for m in demo["ledger"]["by_model"]}
    assert by_model["sim/gpt-4o-mini"] == sum(
        r["cost_nusd"] for r in demo["requests"] if r["served_model"] == "sim/gpt-4o-mini")
    assert sum(h["tokens"] for h in demo["ledger"]["tokens_per_hour"]) >= (
        sent["input_tokens"] + sent["output_tokens"])


def test_demo_without_a_key_says_how_to_get_one(stack: Stack, tmp_path: Path) -> None:
    env = stack.env | {"TOKENRT_STATE_DIR": str(tmp_path)}
    done = subprocess.run([TOKENRT, "demo"], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 2 and "tokenrt up" in done.stderr


def _report(stack: Stack, *args: str) -> dict[str, Any]:
    done = stack.cli("report", "--json", *args, timeout=120)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


async def test_report_figures_are_the_ledgers_and_the_budgets(
        stack: Stack, demo: dict[str, Any]) -> None:
    report = _report(stack, "--since", "2h", "--org", demo["org"], "--project", demo["project"])
    f = ledger_pb2.UsageFilter(org_id=demo["org"], project_id=demo["project"])
    f.start_time.FromDatetime(datetime.fromisoformat(report["start"]))
    f.end_time.FromDatetime(datetime.fromisoformat(report["end"]) + timedelta(minutes=1))
    async with grpc.aio.insecure_channel(stack.settings.endpoint("ledger").address) as ch:
        direct = await ledger_pb2_grpc.LedgerServiceStub(ch).GetReport(
            ledger_pb2.GetReportRequest(filter=f, series_granularity=ledger_pb2.
                                        TIME_GRANULARITY_HOUR, top_n=10))
    expected = ledger_part(direct)
    for key in ("total", "by_project", "by_model", "by_user"):
        assert report[key] == expected[key], key
    assert report["total"]["requests"] >= demo["sent"]["requests"]
    assert report["total"]["cost_nusd"] >= demo["sent"]["cost_nusd"] > 0
    assert report["total"]["cache_saved_cost_nusd"] >= demo["cache"]["saved_cost_nusd"]
    assert report["total"]["compression_saved_tokens"] >= (
        demo["compression"]["original_tokens"] - demo["compression"]["compressed_tokens"])
    assert sum(s["tokens"] for s in report["series"]) == report["total"]["tokens"]
    # Budget levels: the limit that denied dave is full.
    dave = [b for b in report["budgets"] if b["scope"].endswith("/" + demo["denial"]["user"])]
    assert [(b["metric"], b["used"], b["limit"], b["level"]) for b in dave] == [
        ("requests", 2, 2, "exceeded")]
    assert report["cache"]["hits"] >= 1 and report["cache"]["saved_cost_nusd"] > 0


def test_report_rejects_a_bad_range(stack: Stack) -> None:
    done = stack.cli("report", "--since", "yesterday", timeout=120)
    assert done.returncode == 2 and "--since" in done.stderr


def _png_rgb(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit, non-interlaced RGB or RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            channels = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + size
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        prev = line
        rows.append(bytes(v for j in range(0, stride, channels) for v in line[j:j + 3]))
    return width, height, rows


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: apt-get install -y chromium (.ci/run installs it)"
    return found


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars")


def test_report_html_draws_its_charts_in_chromium(stack: Stack, demo: dict[str, Any],
                                                  tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    report = _report(stack, "--since", "2h", "--org", demo["org"], "--html", str(page))
    # Nothing to fetch: one self-contained page (the SVG namespace is a name, not a fetch).
    html = page.read_text().replace("http://www.w3.org/2000/svg", "")
    assert "http://" not in html and "https://" not in html and "<link" not in html
    chromium = _chromium()
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    drawn = {cid: dom.split(f'id="{cid}"', 1)[1].split(">", 1)[0]
             for cid in ("chart-series", "chart-project", "chart-model", "chart-user",
                         "chart-budget")}
    expect = {"chart-series": report["series"], "chart-project": report["by_project"],
              "chart-model": report["by_model"], "chart-user": report["by_user"],
              "chart-budget": report["budgets"]}
    for cid, rows in expect.items():
        assert rows, cid
        assert f'data-drawn="{len(rows)}"' in drawn[cid], (cid, drawn[cid])
    assert dom.count('class="bar"') == sum(len(rows) for rows in expect.values())
    # And the bars are on screen: pixels of the model chart's and the series' colours.
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, "--window-size=1000,700",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    _w, _h, rows = _png_rgb(shot)

    def count(rgb: bytes) -> int:  # solid fills are drawn in their exact colour
        return sum(row.count(rgb) for row in rows)
    assert count(b"\x82\x50\xdf") > 200  # model bars
    assert count(b"\x2d\xa4\x4e") > 200  # series columns


@pytest.fixture
def top_process(stack: Stack) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([TOKENRT, "top", "--org", demokey.DEMO_ORG, "--seconds", "10",
                             "--interval", "0.5", "--json"], env=stack.env, cwd=ROOT,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening on" in line, line + proc.stderr.read()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_top_counts_the_events_published_while_it_runs(
        stack: Stack, top_process: subprocess.Popen[str]) -> None:
    key = demokey.read_key(stack.state_dir)
    assert key is not None
    tag = f"top-{time.time_ns()}"
    sent_cost = 0
    settings = stack.settings
    async with grpc.aio.insecure_channel(settings.endpoint("router").address) as ch, \
            grpc.aio.insecure_channel(settings.endpoint("budget").address) as bch:
        await budget_pb2_grpc.BudgetServiceStub(bch).SetLimit(budget_pb2.SetLimitRequest(
            limit=budget_pb2.Limit(
                scope=common_pb2.Scope(kind=common_pb2.SCOPE_KIND_USER,
                                       org_id=demokey.DEMO_ORG, project_id=demokey.DEMO_PROJECT,
                                       user_id=tag),
                metric=common_pb2.LIMIT_METRIC_REQUESTS, period=common_pb2.LIMIT_PERIOD_DAY,
                limit=3, action=common_pb2.LIMIT_ACTION_DENY)))
        stub = router_pb2_grpc.RouterServiceStub(ch)
        for i in range(3):
            req = router_pb2.CompleteRequest(
                user_id=tag, messages=[common_pb2.Message(
                    role=common_pb2.ROLE_USER,
                    content=[common_pb2.ContentPart(text=f"{tag}: question {i}")])],
                preferences=router_pb2.RoutingPreferences(forced_model="sim/gpt-4o-mini"))
            req.sampling.max_output_tokens = 20
            resp = await stub.Complete(req, metadata=(("authorization", f"Bearer {key}"),))
            sent_cost += resp.completion.cost_nusd
    out, err = top_process.communicate(timeout=60)
    assert top_process.returncode == 0, err
    seen = json.loads(out)
    assert seen["events"] == 3 and seen["by_model"] == {"sim/gpt-4o-mini": 3}
    assert seen["cost_nusd"] == sent_cost > 0
    assert seen["spend_per_minute_nusd"] == sent_cost
    assert seen["by_status"] == {"ok": 3}
    assert seen["requests_per_second"] != "0.0"
    # The budget levels of the organization it watched include the limit just used.
    mine = [b for b in seen["budgets"] if b["scope"].endswith("/" + tag)]
    assert [(b["used"], b["limit"], b["level"]) for b in mine] == [(3, 3, "exceeded")]
