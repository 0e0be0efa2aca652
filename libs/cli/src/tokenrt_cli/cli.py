"""`tokenrt demo`, `tokenrt report` and `tokenrt top`.

Exit codes: 0 done; 1 a service refused or could not be reached, or the demo could not
show every capability (the message says which); 2 bad arguments, settings or no API key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import grpc
from rich.live import Live
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tokenrt.v1 import budget_pb2_grpc
from tokenrt_cli import charts, demo_script, demokey, report_view, top
from tokenrt_cli.demo import STEPS, DemoError, run_demo
from tokenrt_cli.demo_view import render
from tokenrt_cli.report import ReportError, build_report
from tokenrt_cli.report_html import render_html
from tokenrt_common.client import open_channel
from tokenrt_common.settings import Settings, SettingsError, load_settings

KEY_ENV = "TOKENRT_API_KEY"  # as `tokenrt chat`: never a setting, never on the command line


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "demo", help="an IDE session through the router that shows every capability once",
        description="Drives an IDE-like session through the router's gRPC API and shows "
        "exact token counts, a cache hit, a budget warning, a degrade, a denial, a "
        "compression, model selection and the ledger's report. The API key is "
        f"{KEY_ENV}, else the demo key `tokenrt up` wrote to <state>/{demokey.KEY_FILE}.")
    p.add_argument("--provider", choices=("auto", *demo_script.PRESETS), default="auto",
                   help="whose models to use; auto = the first provider whose API key is in "
                   "the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY), "
                   "else the local simulator (default auto)")
    p.add_argument("--model", default="", help="the everyday model (default: the "
                   "provider's, e.g. sim/gpt-4o-mini)")
    p.add_argument("--premium-model", default="", help="the model the degrade step asks for; "
                   "it must degrade to a cheaper one (default: the provider's, e.g. sim/gpt-4o)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON object (progress goes to stderr)")
    p.set_defaults(func=demo_command)

    r = subparsers.add_parser(
        "report", help="spend per project, model and user; budget levels; cache and "
        "compression savings (from the ledger, budget and cache services)")
    r.add_argument("--since", default="7d", help="how far back: 90m, 24h, 7d (default 7d)")
    r.add_argument("--org", default="", help="only this organization (default: all)")
    r.add_argument("--project", default="", help="only this project (needs --org)")
    r.add_argument("--json", action="store_true", help="print the report as one JSON object")
    r.add_argument("--html", metavar="FILE", default="",
                   help="also write a self-contained HTML page with charts to FILE")
    r.set_defaults(func=report_command)

    t = subparsers.add_parser(
        "top", help="live requests per second, spend per minute and budget levels, from the "
        "usage topic")
    t.add_argument("--org", default="", help="only this organization's events")
    t.add_argument("--project", default="", help="only this project's events (needs --org)")
    t.add_argument("--seconds", type=float, default=0.0,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    t.add_argument("--once", action="store_true",
                   help="print one view (after --seconds, default one interval) and exit")
    t.add_argument("--interval", type=float, default=1.0,
                   help="seconds between refreshes (default 1)")
    t.add_argument("--json", action="store_true",
                   help="at the end, print what was seen as one JSON object (no live view)")
    t.set_defaults(func=top_command)


def _settings(command: str) -> Settings:
    try:
        return load_settings({k: v for k, v in os.environ.items() if k != KEY_ENV})
    except SettingsError as exc:
        print(f"tokenrt {command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def demo_command(args: argparse.Namespace) -> int:
    settings = _settings("demo")
    key = os.environ.get(KEY_ENV) or demokey.read_key(settings.state_path)
    if not key:
        print(f"tokenrt demo: no API key: run `tokenrt up` (it writes a demo key to "
              f"{settings.state_path / demokey.KEY_FILE}) or set {KEY_ENV}", file=sys.stderr)
        return 2
    provider = demo_script.pick_provider(args.provider, os.environ)
    preset = demo_script.PRESETS[provider]
    console = charts.console(stderr=args.json)
    console.print(f"[bold]tokenrt demo[/]: provider {provider}, models "
                  f"{args.model or preset.model} and {args.premium_model or preset.premium_model}"
                  f", router at {settings.endpoint('router').address}")
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                        console=console, transient=True)
    task = progress.add_task("starting", total=STEPS)
    done: list[str] = []

    def step(title: str) -> None:
        if done:
            progress.advance(task)
            console.print(f"[green]✓[/] {done[-1]}")
        done.append(title)
        progress.update(task, description=title)

    try:
        with progress:
            summary = asyncio.run(run_demo(settings, key, provider,
                                           args.model or preset.model,
                                           args.premium_model or preset.premium_model, step))
            step("done")
    except DemoError as exc:
        print(f"tokenrt demo: {exc}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as exc:
        print(f"tokenrt demo: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary.to_json()))
    else:
        render(console, summary)
    missing = summary.missing()
    if missing:
        print(f"tokenrt demo: could not show {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def report_command(args: argparse.Namespace) -> int:
    settings = _settings("report")
    try:
        report = asyncio.run(build_report(settings, args.since, args.org, args.project))
    except ReportError as exc:
        print(f"tokenrt report: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        print(f"tokenrt report: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    if args.html:
        try:
            with open(args.html, "w", encoding="utf-8") as out:
                out.write(render_html(report))
        except OSError as exc:
            print(f"tokenrt report: --html: {exc}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(report))
    else:
        console = charts.console()
        report_view.render(console, report)
        if args.html:
            console.print(f"HTML report written to {args.html}")
    return 0


def top_command(args: argparse.Namespace) -> int:
    settings = _settings("top")
    if args.project and not args.org:
        print("tokenrt top: --project needs --org", file=sys.stderr)
        return 2
    if args.interval <= 0 or args.seconds < 0:
        print("tokenrt top: --interval must be > 0 and --seconds >= 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_top(settings, args))
    except KeyboardInterrupt:
        return 0


async def _top(settings: Settings, args: argparse.Namespace) -> int:
    state = top.TopState()
    try:
        nc, subject = await top.subscribe(settings.nats_url, settings.usage_subject_prefix,
                                          args.org, args.project, state,
                                          settings.dependency_timeout_seconds)
    except Exception as exc:  # nats-py raises several unrelated types for "unreachable"
        print(f"tokenrt top: cannot reach NATS at {settings.nats_url}: {exc}", file=sys.stderr)
        return 1
    print(f"tokenrt top: listening on {subject}", file=sys.stderr, flush=True)
    console = charts.console()
    seconds = args.seconds or (args.interval if args.once else 0.0)
    live = None
    if console.is_terminal and not args.json and not args.once:
        live = Live(top.view(state, subject, time.monotonic()), console=console,
                    refresh_per_second=4)
        live.start()
    channel = open_channel(settings, "budget")
    stub = budget_pb2_grpc.BudgetServiceStub(channel)
    began = time.monotonic()
    polled = 0.0
    try:
        while not seconds or time.monotonic() - began < seconds:
            await asyncio.sleep(min(args.interval, max(0.01, seconds - (time.monotonic() - began)))
                                if seconds else args.interval)
            now = time.monotonic()
            state.trim(now)
            if now - polled >= top.BUDGET_POLL_SECONDS:
                await top.poll_budgets(stub, state, args.org)
                polled = now
            if live is not None:
                live.update(top.view(state, subject, now))
    finally:
        if live is not None:
            live.stop()
        await nc.close()
    await top.poll_budgets(stub, state, args.org)
    await channel.close()
    now = time.monotonic()
    if args.json:
        print(json.dumps(state.to_json(now)))
    elif live is None:
        console.print(top.view(state, subject, now))
    return 0
