"""The pure parts of demo, report and top: money formatting, bars, the demo key, the HTML
page's escaping, provider choice."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from rich.console import Console

from tokenrt.v1 import events_pb2
from tokenrt_cli import demokey, report_view, top
from tokenrt_cli.charts import bar, percent, usd
from tokenrt_cli.demo_script import PRESETS, long_conversation, pick_provider
from tokenrt_cli.report_html import render_html
from tokenrt_common.settings import load_settings


def test_money_is_exact_and_bars_scale() -> None:
    assert usd(0) == "$0.00" and usd(1) == "$0.000000001"
    assert usd(1_500_000_000) == "$1.50" and usd(123_456_789_012) == "$123.456789012"
    assert percent(8497) == "85.0%" and percent(10_000) == "100.0%"
    assert bar(10, 10, 4) == "████" and bar(5, 10, 4) == "██" and bar(1, 80, 1) == "▏"
    assert bar(0, 10, 4) == "" and bar(3, 0, 4) == ""


def test_provider_is_the_first_with_a_key_else_the_simulator() -> None:
    assert pick_provider("auto", {}) == "sim"
    assert pick_provider("auto", {"ANTHROPIC_API_KEY": "x"}) == "anthropic"
    assert pick_provider("auto", {"OPENAI_API_KEY": "x", "GEMINI_API_KEY": "y"}) == "openai"
    assert pick_provider("gemini", {"OPENAI_API_KEY": "x"}) == "gemini"
    assert PRESETS["sim"].premium_model == "sim/gpt-4o"


def test_demo_key_is_private_hashed_for_the_router_and_kept(tmp_path: Path) -> None:
    settings = load_settings({"TOKENRT_STATE_DIR": str(tmp_path)})
    given = demokey.with_demo_key(settings, tmp_path)
    key = demokey.read_key(tmp_path)
    assert key is not None and key.startswith("trk_demo_") and len(key) > 30
    assert (tmp_path / demokey.KEY_FILE).stat().st_mode & 0o777 == 0o600
    keys_file = Path(given.router_keys_file)
    assert keys_file.stat().st_mode & 0o777 == 0o600 and key not in keys_file.read_text()
    entry = yaml.safe_load(keys_file.read_text())["keys"][0]
    assert entry["key_sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert (entry["org"], entry["project"], entry["admin"]) == ("demo", "ide", True)
    demokey.with_demo_key(settings, tmp_path)
    assert demokey.read_key(tmp_path) == key  # the same key on the next `up`
    configured = load_settings({"TOKENRT_STATE_DIR": str(tmp_path / "other"),
                                "TOKENRT_ROUTER_KEYS": "k=o/p"})
    assert demokey.with_demo_key(configured, tmp_path / "other") == configured
    assert not (tmp_path / "other").exists()


def _report(name: str) -> dict[str, object]:
    row = {"name": name, "requests": 2, "input_tokens": 10, "output_tokens": 5, "tokens": 15,
           "cost_nusd": 1_234, "cost_usd": usd(1_234), "cache_saved_cost_nusd": 0,
           "compression_saved_tokens": 0, "model": name, "org_id": "o", "project_id": "p",
           "user_id": name}
    total = {k: 0 for k in ("requests", "denied_requests", "degraded_requests",
                            "input_tokens", "output_tokens", "tokens", "cost_nusd",
                            "cache_hit_rate_bp", "cache_saved_tokens", "cache_saved_cost_nusd",
                            "compressed_requests", "compression_saved_tokens",
                            "compression_saved_cost_nusd")}
    return {"generated_at": "2026-11-28T03:00:00+00:00", "since": "7d",
            "start": "2026-11-21T03:00:00+00:00", "end": "2026-11-28T03:00:00+00:00",
            "org": "o", "project": "", "granularity": "day", "total": total,
            "by_project": [row], "by_model": [row], "by_user": [row],
            "series": [{**row, "bucket_start": "2026-11-27T00:00:00+00:00"}],
            "budgets": [{"limit_id": "l1", "name": name, "scope": f"user:o/p/{name}",
                         "metric": "cost", "period": "day", "action": "deny", "used": 7,
                         "reserved": 1, "limit": 10, "remaining": 2, "utilization_bp": 8000,
                         "utilization": "80.0%", "level": "warning"}],
            "cache": {"hits": 1, "misses": 3, "hit_rate_bp": 2500, "saved_tokens": 9,
                      "saved_cost_nusd": 5, "entries": 1, "stored_bytes": 10}}


def test_the_html_page_cannot_be_broken_out_of_by_a_name() -> None:
    evil = "</script><script>alert(1)</script><b>"
    page = render_html(_report(evil))  # type: ignore[arg-type]
    assert evil not in page and "<script>alert(1)" not in page
    assert page.count("<script") == 2  # the data block and the drawing script, no more
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in page  # the tables escape it


def test_report_view_shows_figures_and_levels() -> None:
    console = Console(record=True, width=140)
    report_view.render(console, _report("gpt-x"))  # type: ignore[arg-type]
    text = console.export_text()
    assert "gpt-x" in text and "$0.000001234" in text
    assert "warning 80.0%" in text and "$0.000000008" in text  # used + held, in dollars


def test_top_rates_and_windows() -> None:
    state = top.TopState(started=0.0)
    state.add(events_pb2.UsageEvent(org_id="o", cost_nusd=7,
                                    status=events_pb2.USAGE_STATUS_DENIED), now=-5.0)
    for i in range(20):
        e = events_pb2.UsageEvent(org_id="o", served_model="m", cost_nusd=100,
                                  status=events_pb2.USAGE_STATUS_OK)
        state.add(e, now=50.0 + i * 0.5)  # 2 a second from t=50 to t=59.5
    state.trim(60.0)
    assert str(state.rate(60.0)) == "2.0"
    assert state.spend_per_minute(60.0) == 2000  # the t=-5 event left the minute
    assert state.cost_nusd == 2007 and state.by_status == {"ok": 20, "denied": 1}
    assert sum(state.per_second(60.0)) == 20


def test_the_compression_conversation_is_long() -> None:
    messages = long_conversation("w")
    assert len(messages) == 30 and sum(len(m.content[0].text) for m in messages) > 20_000
