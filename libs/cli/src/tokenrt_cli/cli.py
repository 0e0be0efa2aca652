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

import grpc
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tokenrt_cli import demo_script, demokey
from tokenrt_cli.demo import STEPS, DemoError, run_demo
from tokenrt_cli.demo_view import render
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
    console = Console(stderr=args.json, highlight=False)
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
