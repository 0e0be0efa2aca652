"""The budget domain, pure: scopes and chains, limits, periods, levels and decisions.

No I/O here. Amounts are integers in the metric's unit (tokens, nano-USD, requests);
thresholds are basis points; instants are aware UTC datetimes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tokenrt.v1 import budget_pb2, common_pb2

# Largest amount a limit, an estimate or an actual may have: Redis Lua numbers are
# doubles, exact up to 2**53 (about 9 million USD in nano-USD).
MAX_AMOUNT = 2**53 - 1
NUSD_PER_USD = 1_000_000_000
DEFAULT_WARNING_BP = 8000
DEFAULT_CRITICAL_BP = 9500
# Rolling windows are counted in at most this many buckets (granularity window/60).
ROLLING_BUCKETS = 60
MAX_ROLLING_SECONDS = 366 * 86400

K = common_pb2
ORG, PROJECT, USER, SESSION, API_KEY = (K.SCOPE_KIND_ORG, K.SCOPE_KIND_PROJECT,
                                        K.SCOPE_KIND_USER, K.SCOPE_KIND_SESSION,
                                        K.SCOPE_KIND_API_KEY)
KIND_NAMES = {ORG: "org", PROJECT: "project", USER: "user", SESSION: "session",
              API_KEY: "api_key"}
KINDS_BY_NAME = {v: k for k, v in KIND_NAMES.items()}
# Which Scope fields each kind uses, in the text form's order; (required, optional).
_FIELDS: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    ORG: (("org_id",), ()),
    PROJECT: (("org_id", "project_id"), ()),
    USER: (("org_id", "project_id", "user_id"), ()),
    SESSION: (("org_id", "project_id", "session_id"), ("user_id",)),
    API_KEY: (("org_id", "api_key_id"), ()),
}
_ALL_FIELDS = ("org_id", "project_id", "user_id", "session_id", "api_key_id")

METRIC_NAMES = {K.LIMIT_METRIC_TOKENS: "tokens", K.LIMIT_METRIC_COST: "cost",
                K.LIMIT_METRIC_REQUESTS: "requests"}
METRIC_UNITS = {K.LIMIT_METRIC_TOKENS: "tokens", K.LIMIT_METRIC_COST: "nusd",
                K.LIMIT_METRIC_REQUESTS: "requests"}
PERIOD_NAMES = {K.LIMIT_PERIOD_MINUTE: "minute", K.LIMIT_PERIOD_HOUR: "hour",
                K.LIMIT_PERIOD_DAY: "day", K.LIMIT_PERIOD_WEEK: "week",
                K.LIMIT_PERIOD_MONTH: "month", K.LIMIT_PERIOD_TOTAL: "total",
                K.LIMIT_PERIOD_ROLLING: "rolling"}
ACTION_NAMES = {K.LIMIT_ACTION_ALLOW: "allow", K.LIMIT_ACTION_DENY: "deny",
                K.LIMIT_ACTION_DEGRADE: "degrade", K.LIMIT_ACTION_THROTTLE: "throttle",
                K.LIMIT_ACTION_QUEUE: "queue"}
FAIL_NAMES = {budget_pb2.FAIL_MODE_UNSPECIFIED: "default", budget_pb2.FAIL_MODE_OPEN: "open",
              budget_pb2.FAIL_MODE_CLOSED: "closed"}
LEVEL_NAMES = {K.BUDGET_LEVEL_OK: "ok", K.BUDGET_LEVEL_WARNING: "warning",
               K.BUDGET_LEVEL_CRITICAL: "critical", K.BUDGET_LEVEL_EXCEEDED: "exceeded"}
DECISION_NAMES = {K.BUDGET_DECISION_ALLOW: "allow", K.BUDGET_DECISION_DEGRADE: "degrade",
                  K.BUDGET_DECISION_THROTTLE: "throttle", K.BUDGET_DECISION_QUEUE: "queue",
                  K.BUDGET_DECISION_DENY: "deny"}

# Strictest first: the refusal a chain answers is the strictest triggered action.
_ACTION_RANK = {K.LIMIT_ACTION_DENY: 5, K.LIMIT_ACTION_THROTTLE: 4, K.LIMIT_ACTION_QUEUE: 3,
                K.LIMIT_ACTION_DEGRADE: 2, K.LIMIT_ACTION_ALLOW: 1}
_DECISION_OF = {K.LIMIT_ACTION_DENY: K.BUDGET_DECISION_DENY,
                K.LIMIT_ACTION_THROTTLE: K.BUDGET_DECISION_THROTTLE,
                K.LIMIT_ACTION_QUEUE: K.BUDGET_DECISION_QUEUE,
                K.LIMIT_ACTION_DEGRADE: K.BUDGET_DECISION_DEGRADE}


class InvalidInput(ValueError):
    """A request field is wrong; `field` names it, the message says what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------------------------
# Scopes
# ---------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Scope:
    kind: int
    org_id: str = ""
    project_id: str = ""
    user_id: str = ""
    session_id: str = ""
    api_key_id: str = ""

    @property
    def text(self) -> str:
        """The CLI form, e.g. `project:acme/web`."""
        required, optional = _FIELDS[self.kind]
        names = list(required)
        if self.kind == SESSION and self.user_id:
            names = ["org_id", "project_id", "user_id", "session_id"]
        return f"{KIND_NAMES[self.kind]}:" + "/".join(getattr(self, n) for n in names)


_ID = re.compile(r"^[^\s/]{1,200}$")


@lru_cache(maxsize=65536)
def check_scope(scope: Scope, where: str = "scope") -> Scope:
    """The scope itself when its kind and ids are valid, else InvalidInput."""
    if scope.kind not in _FIELDS:
        raise InvalidInput(f"{where}.kind", f"{where}.kind: unknown scope kind {scope.kind}; "
                           f"use one of {', '.join(KINDS_BY_NAME)}")
    required, optional = _FIELDS[scope.kind]
    name = KIND_NAMES[scope.kind]
    for f in _ALL_FIELDS:
        value = getattr(scope, f)
        if f in required and not value:
            raise InvalidInput(f"{where}.{f}", f"{where}.{f}: a {name} scope needs {f}")
        if f not in required and f not in optional and value:
            raise InvalidInput(f"{where}.{f}", f"{where}.{f}: a {name} scope must not set {f}")
        if value and not _ID.match(value):
            raise InvalidInput(f"{where}.{f}", f"{where}.{f}: {value!r} must be 1-200 "
                               "characters without spaces or '/'")
    return scope


def parse_scope(text: str) -> Scope:
    """`kind:id/id...` as in the CLI (see common.proto Scope)."""
    kind_name, sep, rest = text.partition(":")
    if not sep or kind_name not in KINDS_BY_NAME:
        raise InvalidInput("scope", f"scope {text!r}: write KIND:IDS with KIND one of "
                           f"{', '.join(KINDS_BY_NAME)}, e.g. project:acme/web")
    kind = KINDS_BY_NAME[kind_name]
    ids = rest.split("/")
    required, optional = _FIELDS[kind]
    names: tuple[str, ...] = required
    if kind == SESSION and len(ids) == 4:
        names = ("org_id", "project_id", "user_id", "session_id")
    if len(ids) != len(names):
        raise InvalidInput("scope", f"scope {text!r}: a {kind_name} scope is "
                           f"{kind_name}:{'/'.join(n.removesuffix('_id').upper() for n in names)}")
    return check_scope(Scope(kind, **dict(zip(names, ids, strict=True))))


_RANK = {ORG: 0, PROJECT: 1, USER: 2, SESSION: 3, API_KEY: 4}


def check_chain(scopes: Sequence[Scope]) -> tuple[Scope, ...]:
    """A request's chain: 1-8 valid scopes of one organization, broadest first."""
    if not scopes:
        raise InvalidInput("chain.scopes", "chain.scopes: give at least one scope "
                           "(org, project, user, session, api_key; broadest first)")
    if len(scopes) > 8:
        raise InvalidInput("chain.scopes", "chain.scopes: at most 8 scopes")
    for i, s in enumerate(scopes):
        check_scope(s, f"chain.scopes[{i}]")
    orgs = {s.org_id for s in scopes}
    if len(orgs) != 1:
        raise InvalidInput("chain.scopes", "chain.scopes: every scope of a chain must be in "
                           f"one organization, got {sorted(orgs)}")
    ranks = [_RANK[s.kind] for s in scopes]
    if ranks != sorted(ranks) or len(set(ranks)) != len(ranks):
        raise InvalidInput("chain.scopes", "chain.scopes: list each kind once, broadest "
                           "first: org, project, user, session, api_key")
    return tuple(scopes)


# ---------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limit:
    limit_id: str
    scope: Scope
    metric: int
    period: int
    limit: int
    action: int
    rolling_window_seconds: int = 0
    time_zone: str = ""
    warning_bp: int = DEFAULT_WARNING_BP
    critical_bp: int = DEFAULT_CRITICAL_BP
    fail_mode: int = budget_pb2.FAIL_MODE_UNSPECIFIED
    name: str = ""
    # Usage before this instant is not counted (set by Reset; used by rebuilds).
    reset_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __hash__(self) -> int:
        # By id alone (equal limits have equal ids): the answers' caches look a limit up
        # in every call, and a hash of all fields cost more than the rest of the lookup.
        return hash(self.limit_id)

    @property
    def fails_closed(self) -> bool:
        if self.fail_mode == budget_pb2.FAIL_MODE_UNSPECIFIED:
            return self.action == K.LIMIT_ACTION_DENY
        return self.fail_mode == budget_pb2.FAIL_MODE_CLOSED

    @property
    def zone(self) -> ZoneInfo:
        return zone_of(self.time_zone)


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("limit.time_zone", f"limit.time_zone: {name!r} is not an IANA "
                           "time zone such as Europe/Berlin") from None


def check_limit(lim: Limit) -> Limit:
    """The limit with defaults filled in, or InvalidInput naming the bad field."""
    check_scope(lim.scope, "limit.scope")
    if lim.metric not in METRIC_NAMES:
        raise InvalidInput("limit.metric", "limit.metric: choose tokens, cost or requests")
    if lim.period not in PERIOD_NAMES:
        raise InvalidInput("limit.period", "limit.period: choose minute, hour, day, week, "
                           "month, total or rolling")
    if lim.action not in ACTION_NAMES:
        raise InvalidInput("limit.action", "limit.action: choose allow, deny, degrade, "
                           "throttle or queue")
    if lim.fail_mode not in FAIL_NAMES:
        raise InvalidInput("limit.fail_mode", "limit.fail_mode: unknown value")
    if not 0 < lim.limit <= MAX_AMOUNT:
        raise InvalidInput("limit.limit", f"limit.limit: must be between 1 and {MAX_AMOUNT} "
                           f"{METRIC_UNITS[lim.metric]}, got {lim.limit}")
    if lim.period == K.LIMIT_PERIOD_ROLLING:
        if not 0 < lim.rolling_window_seconds <= MAX_ROLLING_SECONDS:
            raise InvalidInput("limit.rolling_window_seconds", "limit.rolling_window_seconds: "
                               f"a rolling window needs 1 to {MAX_ROLLING_SECONDS} seconds, got "
                               f"{lim.rolling_window_seconds}")
    elif lim.rolling_window_seconds:
        raise InvalidInput("limit.rolling_window_seconds", "limit.rolling_window_seconds: "
                           "only rolling limits have a window; leave it 0")
    zone_of(lim.time_zone)
    if not 0 < lim.warning_bp <= lim.critical_bp <= 10000:
        raise InvalidInput("limit.warning_threshold_bp", "thresholds: need 0 < warning <= "
                           f"critical <= 10000 bp, got {lim.warning_bp} and {lim.critical_bp}")
    if len(lim.name) > 200:
        raise InvalidInput("limit.name", "limit.name: at most 200 characters")
    return lim


def usd_to_nusd(text: str) -> int:
    """A USD amount written as a decimal (`50`, `0.25`) in nano-USD, rounded half-even."""
    try:
        value = Decimal(text.strip().lstrip("$"))
    except InvalidOperation:
        raise InvalidInput("limit", f"{text!r} is not a USD amount like 50 or 12.5") from None
    if not value.is_finite():
        raise InvalidInput("limit", f"{text!r} is not a finite USD amount")
    return int((value * NUSD_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def nusd_to_usd(nusd: int) -> str:
    """Exact decimal USD text of a nano-USD amount, without trailing zeros."""
    text = format(Decimal(nusd) / NUSD_PER_USD, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# ---------------------------------------------------------------------------------
# Periods
# ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """The current period of a limit: a key naming it and its bounds (None = open)."""

    key: str
    start: datetime | None
    end: datetime | None


_FIXED = {K.LIMIT_PERIOD_MINUTE: 60, K.LIMIT_PERIOD_HOUR: 3600}


def _offset(zone: ZoneInfo, ts: int) -> int:
    off = datetime.fromtimestamp(ts, UTC).astimezone(zone).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def _change_after(zone: ZoneInfo, lo: int, hi: int) -> int:
    """The first second in (lo, hi] with hi's UTC offset, when lo's offset differs."""
    want = _offset(zone, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, mid) == want:
            hi = mid
        else:
            lo = mid
    return hi


def _fixed_bounds(zone: ZoneInfo, ts: int, size: int) -> tuple[int, int]:
    """Minute / hour aligned on the local wall clock; an offset change also starts one."""
    off = _offset(zone, ts)
    start = ts - (ts + off) % size
    if _offset(zone, start) != off:
        start = _change_after(zone, start, ts)
    end = ts - (ts + off) % size + size
    if _offset(zone, end - 1) != off:
        end = _change_after(zone, ts, end - 1)
    return start, end


def _local_midnight(zone: ZoneInfo, day: date) -> datetime:
    # fold=0 maps a midnight skipped by DST to the instant the clocks jumped.
    local = datetime(day.year, day.month, day.day, tzinfo=zone)
    return local.astimezone(UTC)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def period_bounds(period: int, zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the calendar period (minute ... month) holding `now`, in `zone`."""
    if period in _FIXED:
        ts = math.floor(now.timestamp())
        start, end = _fixed_bounds(zone, ts, _FIXED[period])
        return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    today = now.astimezone(zone).date()
    if period == K.LIMIT_PERIOD_DAY:
        first, after = today, today + timedelta(days=1)
    elif period == K.LIMIT_PERIOD_WEEK:
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    elif period == K.LIMIT_PERIOD_MONTH:
        first = today.replace(day=1)
        after = _next_month(first)
    else:
        raise ValueError(f"not a calendar period: {period}")
    return _local_midnight(zone, first), _local_midnight(zone, after)


def window(lim: Limit, now: datetime) -> Window:
    """The limit's current period. TOTAL has no bounds; ROLLING ends now."""
    if lim.period == K.LIMIT_PERIOD_TOTAL:
        return Window("total", None, None)
    if lim.period == K.LIMIT_PERIOD_ROLLING:
        return Window("roll", now - timedelta(seconds=lim.rolling_window_seconds), now)
    start, end = period_bounds(lim.period, lim.zone, now)
    return Window(str(int(start.timestamp())), start, end)


def rolling_buckets(window_seconds: int) -> tuple[int, int]:
    """(bucket length in seconds, bucket count) that cover a rolling window."""
    size = max(1, math.ceil(window_seconds / ROLLING_BUCKETS))
    return size, math.ceil(window_seconds / size)


# ---------------------------------------------------------------------------------
# Levels and decisions
# ---------------------------------------------------------------------------------

def utilization_bp(held: int, limit: int) -> int:
    """held / limit in basis points, rounded down, capped to int32."""
    return min(held * 10000 // limit, 2**31 - 1) if limit > 0 else 0


def level(held: int, limit: int, warning_bp: int, critical_bp: int) -> int:
    """The level of `held` (used + reserved) against a limit and its thresholds."""
    if held >= limit:
        return K.BUDGET_LEVEL_EXCEEDED
    if held * 10000 >= limit * critical_bp:
        return K.BUDGET_LEVEL_CRITICAL
    if held * 10000 >= limit * warning_bp:
        return K.BUDGET_LEVEL_WARNING
    return K.BUDGET_LEVEL_OK


def need_of(metric: int, tokens: int, cost_nusd: int, requests: int) -> int:
    """A request's amount in a metric's unit."""
    if metric == K.LIMIT_METRIC_TOKENS:
        return tokens
    if metric == K.LIMIT_METRIC_COST:
        return cost_nusd
    if metric == K.LIMIT_METRIC_REQUESTS:
        return requests
    raise ValueError(f"unknown metric {metric}")


def blocks(action: int, degraded: bool) -> bool:
    """Whether going over a limit with this action refuses the request."""
    if action == K.LIMIT_ACTION_ALLOW:
        return False
    return not (action == K.LIMIT_ACTION_DEGRADE and degraded)


def fits(used: int, reserved: int, need: int, limit: int) -> bool:
    return used + reserved + need <= limit


@dataclass(frozen=True)
class Check:
    """One limit's counters as the reservation found them."""

    limit: Limit
    used: int
    reserved: int
    need: int
    # For refused rolling limits: milliseconds until enough of the window frees.
    retry_after_ms: int = 0
    window: Window = field(default_factory=lambda: Window("", None, None))

    @property
    def over(self) -> bool:
        return not fits(self.used, self.reserved, self.need, self.limit.limit)


@dataclass(frozen=True)
class Decision:
    decision: int
    # Limit ids that decided a refusal or flagged an exceeded soft limit.
    triggered: frozenset[str]
    retry_after_ms: int


def decide(checks: Sequence[Check], now: datetime, degraded: bool = False) -> Decision:
    """All-or-nothing over a chain's limits: the strictest refusing action wins."""
    refusing = [c for c in checks if c.over and blocks(c.limit.action, degraded)]
    if not refusing:
        flagged = frozenset(c.limit.limit_id for c in checks if c.over)
        return Decision(K.BUDGET_DECISION_ALLOW, flagged, 0)
    worst = max(_ACTION_RANK[c.limit.action] for c in refusing)
    deciding = [c for c in refusing if _ACTION_RANK[c.limit.action] == worst]
    action = deciding[0].limit.action
    retry = 0
    if action != K.LIMIT_ACTION_DENY or all(c.window.end for c in deciding):
        retry = max(retry_after_ms(c, now) for c in deciding)
    return Decision(_DECISION_OF[action], frozenset(c.limit.limit_id for c in deciding), retry)


def retry_after_ms(check: Check, now: datetime) -> int:
    """How long until the limit could take the request (0 = unknown / never)."""
    if check.limit.period == K.LIMIT_PERIOD_ROLLING:
        return check.retry_after_ms
    if check.window.end is None:
        return 0
    return max(0, math.ceil((check.window.end - now).total_seconds() * 1000))


def reset_time(check: Check, now: datetime) -> datetime | None:
    """LimitState.reset_at: period end; for rolling, when the refused request would fit."""
    if check.limit.period == K.LIMIT_PERIOD_ROLLING:
        wait = check.retry_after_ms if check.over else check.limit.rolling_window_seconds * 1000
        return now + timedelta(milliseconds=wait)
    return check.window.end


def charged_since(lim: Limit, win: Window) -> datetime | None:
    """Start of what a rebuild must count: the period start, or a later Reset."""
    if lim.reset_at is None:
        return win.start
    if win.start is None:
        return lim.reset_at
    return max(win.start, lim.reset_at)


def with_defaults(lim: Limit, warning_bp: int | None, critical_bp: int | None) -> Limit:
    return replace(lim, warning_bp=DEFAULT_WARNING_BP if warning_bp is None else warning_bp,
                   critical_bp=DEFAULT_CRITICAL_BP if critical_bp is None else critical_bp)
