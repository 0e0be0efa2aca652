"""`tokenrt`: bring the stack up and down, show its status, run one service.

Exit codes: 0 done; 1 could not do it (see the message); 2 bad configuration (unknown or
malformed setting, port in use). `status` exits 0 whenever it could check, whatever it found.
A second `up` while a stack from the same state folder runs refuses (exit 1): `down` first.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from tokenrt_cli import demokey
from tokenrt_cli.render import short_path, table
from tokenrt_cli.stack import Stack, StackError, down, run_foreground, status, up
from tokenrt_common.settings import SERVICES, Settings, SettingsError, load_settings

# Packages that add their own commands with `register(subparsers)`.
COMMAND_MODULES = (
    "tokenrt_counter.cli",  # count, models, price
    "tokenrt_ledger.cli",  # usage
    "tokenrt_cache.cli",  # cache stats, clear, config
    "tokenrt_budget.cli",  # budget set, status, list, reset, remove
    "tokenrt_compressor.cli",  # compress
    "tokenrt_router.cli",  # chat, sim
    "tokenrt_cli.cli",  # demo, report, top
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenrt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start NATS/Postgres/Redis (embedded where none answers) "
                          "and the six services; wait until all are SERVING")
    p_up.add_argument("--detach", action="store_true",
                      help="return once everything is SERVING instead of staying in the "
                      "foreground (Ctrl-C there stops everything)")
    p_up.add_argument("--reuse", action="store_true",
                      help="when a stack from this state folder already runs, use it (with "
                      "--detach: print it and exit 0) instead of refusing")
    p_up.add_argument("--timeout", type=float, default=60.0,
                      help="seconds to wait for all services to be SERVING (default 60)")
    sub.add_parser("down", help="stop exactly what `up` started (from <state>/stack.json)")
    p_status = sub.add_parser("status", help="health of the services and the infrastructure")
    p_status.add_argument("--json", action="store_true", help="print one JSON object")
    p_serve = sub.add_parser("serve", help="run one service in the foreground")
    p_serve.add_argument("name", choices=SERVICES)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if hasattr(args, "func"):  # a command a service package registered
        sys.exit(args.func(args))
    if args.command == "serve":
        importlib.import_module(f"tokenrt_{args.name}.__main__").main()
        return
    try:
        settings = load_settings()
        settings.state_path  # noqa: B018  (resolves; fails early on a bad path)
    except SettingsError as exc:
        _fail(str(exc), 2)
    except OSError as exc:
        _fail(f"cannot read the configuration: {exc}", 2)
    try:
        if args.command == "up":
            sys.exit(_up(settings, args.detach, args.timeout, args.reuse))
        if args.command == "down":
            down(settings)
            sys.exit(0)
        report = asyncio.run(status(settings))
    except StackError as exc:
        _fail(str(exc), exc.exit_code)
    except OSError as exc:  # e.g. a state folder that cannot be written
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted; what was started has been stopped", 130)
    if args.json:
        print(json.dumps(report))
    else:
        print(_status_table(report))


def _up(settings: Settings, detach: bool, timeout: float, reuse: bool = False) -> int:
    async def go() -> None:
        # SIGTERM during start-up cancels it like Ctrl-C does: everything started is stopped.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        began = time.monotonic()
        try:
            stack = await up(settings, detach=detach, limit_seconds=timeout, reuse=reuse)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
        print(_up_table(settings, stack))
        if stack.owner_pid != os.getpid():
            print(f"already running since {stack.started_at}; processes listed in "
                  f"{short_path(stack.path)}")
            if not detach:
                await run_foreground(settings, stack)
            return
        print(f"all {len(SERVICES)} services SERVING in {time.monotonic() - began:.1f} s; "
              f"processes listed in {short_path(stack.path)}")
        if detach:
            print("stop them with: tokenrt down")
            return
        print("running in the foreground; Ctrl-C stops everything")
        await run_foreground(settings, stack)

    try:
        asyncio.run(go())
    except asyncio.CancelledError:
        _fail("terminated; what was started has been stopped", 143)
    return 0


def _up_table(settings: Settings, stack: Stack) -> str:
    rows = [(name, s.address, s.metrics_port, s.process.pid, short_path(s.process.log))
            for name, s in stack.services.items()]
    services = table(("SERVICE", "ADDRESS", "METRICS", "PID", "LOG"), rows)
    infra_rows = [(kind, e.url, "yes" if e.embedded else "no",
                   e.process.pid if e.process else "",
                   short_path(e.process.data_dir) if e.process else "")
                  for kind, e in stack.infra.items()]
    sim = stack.sim
    if sim is not None:
        infra_rows.append(("sim", sim.url, "yes" if sim.process else "no",
                           sim.process.pid if sim.process else "",
                           short_path(sim.process.log) if sim.process else ""))
    infra = table(("INFRA", "URL", "EMBEDDED", "PID", "DATA"), infra_rows)
    lines = [services, "", infra]
    if settings.router_http_addr:
        lines += ["", f"OpenAI-compatible endpoint: http://{settings.router_http_addr}/v1"]
    key = demokey.read_key(stack.state_dir)
    if key is not None and not settings.router_keys and not settings.router_keys_file:
        lines.append(f"demo API key (tenant {demokey.DEMO_ORG}/{demokey.DEMO_PROJECT}) in "
                     f"{short_path(demokey.key_path(stack.state_dir))}")
    return "\n".join(lines)


def _status_table(report: dict[str, Any]) -> str:
    services = table(("SERVICE", "ADDRESS", "HEALTH", "PID"),
                     [(n, s["address"], s["health"], s["pid"])
                      for n, s in report["services"].items()])
    rows = [(k, i["url"], "yes" if i["answers"] else "no", "yes" if i["embedded"] else "no")
            for k, i in report["infra"].items()]
    sim = report["sim"]
    rows.append(("sim", sim["url"], "yes" if sim["answers"] else "no",
                 "yes" if sim["started"] else "no"))
    infra = table(("INFRA", "URL", "ANSWERS", "EMBEDDED"), rows)
    openai = report.get("openai_base_url")
    tail = f"\n\nOpenAI-compatible endpoint: {openai}" if openai else ""
    return f"{services}\n\n{infra}{tail}"


def _fail(message: str, code: int) -> None:
    print(f"tokenrt: {message}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
