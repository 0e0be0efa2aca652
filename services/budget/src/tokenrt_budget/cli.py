"""`tokenrt budget`: set, list, inspect and reset budget limits.

    tokenrt budget set --scope project:ORG/PROJECT --metric cost --period month --limit 50 \\
                       --action deny [--warn 0.8] [--critical 0.95] [--tz Europe/Berlin]
    tokenrt budget status --scope org:ORG [--descendants] [--json]
    tokenrt budget list [--org ORG | --scope SCOPE] [--json]
    tokenrt budget reset --scope SCOPE [--limit-id ID]
    tokenrt budget remove LIMIT_ID

Cost limits are USD written as decimals (`50`, `12.75`), stored exactly in nano-USD.
The lead wires `register` into the `tokenrt` command; `python -m tokenrt_budget.cli` runs
the same commands on their own. Exit codes: 0 done, 1 the budget service could not be
reached or refused the call (the message says why), 2 bad arguments or settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import grpc
from google.protobuf import json_format

from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2
from tokenrt_budget import core
from tokenrt_budget.core import InvalidInput
from tokenrt_common.client import open_channel
from tokenrt_common.settings import SettingsError, load_settings

K = common_pb2
PERIODS = {v: k for k, v in core.PERIOD_NAMES.items()}
METRICS = {v: k for k, v in core.METRIC_NAMES.items()}
ACTIONS = {v: k for k, v in core.ACTION_NAMES.items()}
FAILS = {"default": budget_pb2.FAIL_MODE_UNSPECIFIED, "open": budget_pb2.FAIL_MODE_OPEN,
         "closed": budget_pb2.FAIL_MODE_CLOSED}


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `budget` (set, status, list, reset, remove) to a command's subparsers."""
    p = subparsers.add_parser("budget", help="budget limits: set, status, list, reset",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="budget_command", required=True)

    s = sub.add_parser("set", help="create or replace a limit")
    s.add_argument("--scope", required=True, help="e.g. org:acme, project:acme/web, "
                   "user:acme/web/alice, session:acme/web/s1, api_key:acme/key_1")
    s.add_argument("--metric", choices=sorted(METRICS), required=True)
    s.add_argument("--period", choices=sorted(PERIODS), required=True)
    s.add_argument("--window", type=int, default=0,
                   help="seconds of a rolling window (with --period rolling)")
    s.add_argument("--limit", required=True,
                   help="tokens or requests as a whole number; cost in USD as a decimal")
    s.add_argument("--action", choices=sorted(ACTIONS), required=True)
    s.add_argument("--warn", help="warning threshold as a fraction (default 0.8)")
    s.add_argument("--critical", help="critical threshold as a fraction (default 0.95)")
    s.add_argument("--tz", default="", help="IANA time zone of calendar periods (default UTC)")
    s.add_argument("--fail", choices=sorted(FAILS), default="default",
                   help="when Redis is unreachable (default: closed for deny, else open)")
    s.add_argument("--name", default="", help="a label shown in status and alerts")
    s.add_argument("--id", default="", help="replace this limit instead of creating one")
    s.add_argument("--json", action="store_true", help="print the saved limit as JSON")
    s.set_defaults(func=lambda a: _run(_set, a))

    st = sub.add_parser("status", help="current usage of the limits on a scope")
    st.add_argument("--scope", required=True)
    st.add_argument("--descendants", action="store_true", help="also scopes below it")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=lambda a: _run(_status, a))

    ls = sub.add_parser("list", help="configured limits")
    ls.add_argument("--org", default="")
    ls.add_argument("--scope", default="")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=lambda a: _run(_list, a))

    r = sub.add_parser("reset", help="zero the current period's usage of a scope's limits")
    r.add_argument("--scope", required=True)
    r.add_argument("--limit-id", default="")
    r.set_defaults(func=lambda a: _run(_reset, a))

    rm = sub.add_parser("remove", help="delete a limit")
    rm.add_argument("limit_id")
    rm.set_defaults(func=lambda a: _run(_remove, a))


def _scope(text: str) -> common_pb2.Scope:
    s = core.parse_scope(text)
    return common_pb2.Scope(kind=s.kind, org_id=s.org_id, project_id=s.project_id,  # type: ignore[arg-type]
                            user_id=s.user_id, session_id=s.session_id, api_key_id=s.api_key_id)


def _amount(text: str, metric: int) -> int:
    if metric == K.LIMIT_METRIC_COST:
        return core.usd_to_nusd(text)
    if not text.strip().isdigit():
        raise InvalidInput("limit", f"--limit {text!r}: {core.METRIC_UNITS[metric]} are a whole "
                           "number")
    return int(text)


def _bp(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    try:
        value = Decimal(text) * 10000
    except InvalidOperation:
        raise InvalidInput(flag, f"{flag} {text!r}: write a fraction such as 0.8") from None
    if value != value.to_integral_value() or not 0 < value <= 10000:
        raise InvalidInput(flag, f"{flag} {text!r}: a fraction above 0 and at most 1, with at "
                           "most 4 decimals")
    return int(value)


def _show_amount(metric: int, value: int) -> str:
    return f"${core.nusd_to_usd(value)}" if metric == K.LIMIT_METRIC_COST else str(value)


async def _set(stub: budget_pb2_grpc.BudgetServiceStub, a: argparse.Namespace) -> None:
    metric = METRICS[a.metric]
    lim = budget_pb2.Limit(limit_id=a.id, scope=_scope(a.scope), metric=metric,  # type: ignore[arg-type]
                           period=PERIODS[a.period], rolling_window_seconds=a.window,  # type: ignore[arg-type]
                           time_zone=a.tz, limit=_amount(a.limit, metric),
                           action=ACTIONS[a.action], fail_mode=FAILS[a.fail], name=a.name)  # type: ignore[arg-type]
    for flag, value, name in (("--warn", a.warn, "warning_threshold_bp"),
                              ("--critical", a.critical, "critical_threshold_bp")):
        bp = _bp(value, flag)
        if bp is not None:
            setattr(lim, name, bp)
    reply = await stub.SetLimit(budget_pb2.SetLimitRequest(limit=lim))
    if a.json:
        print(json_format.MessageToJson(reply.limit))
        return
    saved = reply.limit
    print(f"{'created' if reply.created else 'updated'} {saved.limit_id}: "
          f"{core.parse_scope(a.scope).text} {a.metric} per {a.period} "
          f"{_show_amount(metric, saved.limit)} action={a.action} "
          f"warn={saved.warning_threshold_bp / 100:g}% "
          f"critical={saved.critical_threshold_bp / 100:g}%")


def _state_row(s: common_pb2.LimitState) -> dict[str, Any]:
    return {"limit_id": s.limit_id, "scope": _scope_text(s.scope),
            "metric": core.METRIC_NAMES.get(s.metric, "?"),
            "period": core.PERIOD_NAMES.get(s.period, "?"),
            "used": _show_amount(s.metric, s.used), "reserved": _show_amount(s.metric, s.reserved),
            "limit": _show_amount(s.metric, s.limit),
            "remaining": _show_amount(s.metric, s.remaining),
            "utilization": f"{s.utilization_bp / 100:.2f}%",
            "level": core.LEVEL_NAMES.get(s.level, "unknown"),
            "action": core.ACTION_NAMES.get(s.action, "?"),
            "resets": s.reset_at.ToDatetime().isoformat() + "Z" if s.HasField("reset_at") else "-"}


def _scope_text(s: common_pb2.Scope) -> str:
    try:
        return core.Scope(s.kind, s.org_id, s.project_id, s.user_id, s.session_id,
                          s.api_key_id).text
    except KeyError:
        return "?"


def _table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("(none)")
        return
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


async def _status(stub: budget_pb2_grpc.BudgetServiceStub, a: argparse.Namespace) -> None:
    reply = await stub.Status(budget_pb2.StatusRequest(scope=_scope(a.scope),
                                                       include_descendants=a.descendants))
    if a.json:
        print(json_format.MessageToJson(reply))
        return
    _table([_state_row(s) for s in reply.limits])
    if reply.enforcement != K.BUDGET_ENFORCEMENT_ENFORCED and reply.limits:
        print("counters unreachable: figures are not live", file=sys.stderr)


async def _list(stub: budget_pb2_grpc.BudgetServiceStub, a: argparse.Namespace) -> None:
    request = budget_pb2.ListLimitsRequest(org_id=a.org, page_size=1000)
    if a.scope:
        request.scope.CopyFrom(_scope(a.scope))
    limits: list[budget_pb2.Limit] = []
    while True:
        reply = await stub.ListLimits(request)
        limits += reply.limits
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    if a.json:
        print(json.dumps([json_format.MessageToDict(x) for x in limits], indent=2))
        return
    _table([{"limit_id": x.limit_id, "scope": _scope_text(x.scope),
             "metric": core.METRIC_NAMES.get(x.metric, "?"),
             "period": core.PERIOD_NAMES.get(x.period, "?") + (
                 f" {x.rolling_window_seconds}s" if x.rolling_window_seconds else ""),
             "limit": _show_amount(x.metric, x.limit), "action": core.ACTION_NAMES[x.action],
             "warn": f"{x.warning_threshold_bp / 100:g}%", "tz": x.time_zone or "UTC",
             "name": x.name} for x in limits])


async def _reset(stub: budget_pb2_grpc.BudgetServiceStub, a: argparse.Namespace) -> None:
    reply = await stub.Reset(budget_pb2.ResetRequest(scope=_scope(a.scope), limit_id=a.limit_id))
    print(f"reset {reply.limits_reset} limit(s) on {core.parse_scope(a.scope).text}")


async def _remove(stub: budget_pb2_grpc.BudgetServiceStub, a: argparse.Namespace) -> None:
    reply = await stub.RemoveLimit(budget_pb2.RemoveLimitRequest(limit_id=a.limit_id))
    print(f"removed {reply.limit.limit_id}")


Command = Callable[[budget_pb2_grpc.BudgetServiceStub, argparse.Namespace], Awaitable[None]]


def _run(command: Command, args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"tokenrt budget: {exc}", file=sys.stderr)
        return 2

    async def go() -> None:
        channel = open_channel(settings, "budget")
        try:
            await command(budget_pb2_grpc.BudgetServiceStub(channel), args)
        finally:
            await channel.close()

    try:
        asyncio.run(go())
    except InvalidInput as exc:
        print(f"tokenrt budget: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        where = settings.endpoint("budget").address
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            print(f"tokenrt budget: the budget service at {where} did not answer "
                  f"({exc.code().name}: {exc.details()}); is `tokenrt up` running?",
                  file=sys.stderr)
        else:
            print(f"tokenrt budget: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokenrt")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
