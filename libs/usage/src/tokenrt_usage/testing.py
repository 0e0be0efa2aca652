"""Realistic UsageEvents for tests, benchmarks and demos (no randomness unless seeded)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from tokenrt.v1 import common_pb2, events_pb2
from tokenrt_usage.events import SCHEMA_VERSION, new_event_id

MODELS = (("gpt-4o-mini", common_pb2.PROVIDER_OPENAI),
          ("claude-sonnet-4-5", common_pb2.PROVIDER_ANTHROPIC),
          ("gemini-2.5-flash", common_pb2.PROVIDER_GEMINI))


def make_event(
    *,
    org_id: str = "acme",
    project_id: str = "web",
    user_id: str = "alice",
    session_id: str = "s1",
    model_index: int = 0,
    input_tokens: int = 1000,
    output_tokens: int = 200,
    cost_nusd: int = 270_000,
    occurred_at: datetime | None = None,
    status: int = events_pb2.USAGE_STATUS_OK,
    event_id: str | None = None,
    latency_ms: int = 800,
) -> events_pb2.UsageEvent:
    model, provider = MODELS[model_index % len(MODELS)]
    when = occurred_at or datetime.now(UTC)
    event = events_pb2.UsageEvent(
        schema_version=SCHEMA_VERSION, event_id=event_id or new_event_id(),
        org_id=org_id, project_id=project_id, user_id=user_id, session_id=session_id,
        request_id=f"req-{new_event_id()}", provider=provider, requested_model=model,
        served_model=model, usage=common_pb2.Usage(input_tokens=input_tokens,
                                                   output_tokens=output_tokens),
        cost_nusd=cost_nusd, latency_ms=latency_ms, status=status,
        budget_decision=common_pb2.BUDGET_DECISION_ALLOW,
    )
    event.occurred_at.FromDatetime(when)
    event.started_at.FromDatetime(when - timedelta(milliseconds=latency_ms))
    if status == events_pb2.USAGE_STATUS_CACHE_HIT:
        event.cache_hit = True
        event.cache_saved_tokens = input_tokens + output_tokens
        event.cache_saved_cost_nusd = cost_nusd
        event.cost_nusd = 0
        event.usage.Clear()
    else:
        event.budget_reservation_id = f"rsv-{event.event_id}"
        event.budget_reserved_at.FromDatetime(when - timedelta(milliseconds=latency_ms))
    return event


def random_events(n: int, seed: int = 1, *, orgs: int = 2, projects: int = 3, users: int = 5,
                  sessions: int = 20, start: datetime | None = None,
                  spread: timedelta = timedelta(hours=1)) -> list[events_pb2.UsageEvent]:
    """`n` events spread over tenants, models and statuses, reproducibly."""
    rng = random.Random(seed)
    origin = start or datetime.now(UTC) - spread
    out = []
    for _ in range(n):
        status = rng.choice([events_pb2.USAGE_STATUS_OK] * 8 + [
            events_pb2.USAGE_STATUS_CACHE_HIT, events_pb2.USAGE_STATUS_ERROR])
        event = make_event(
            org_id=f"org{rng.randrange(orgs)}", project_id=f"p{rng.randrange(projects)}",
            user_id=f"u{rng.randrange(users)}", session_id=f"s{rng.randrange(sessions)}",
            model_index=rng.randrange(len(MODELS)), input_tokens=rng.randrange(10, 20_000),
            output_tokens=rng.randrange(0, 4_000), cost_nusd=rng.randrange(0, 50_000_000),
            occurred_at=origin + timedelta(seconds=rng.random() * spread.total_seconds()),
            status=status, latency_ms=rng.randrange(50, 5_000))
        if rng.random() < 0.2:
            event.compression_applied = True
            event.compression_saved_tokens = rng.randrange(100, 5_000)
            event.compression_saved_cost_nusd = rng.randrange(1_000, 1_000_000)
        out.append(event)
    return out


async def stream_events(js: JetStreamContext, stream: str) -> list[events_pb2.UsageEvent]:
    """Every UsageEvent on a stream, in stream order (for tests and small streams)."""
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:
            continue
        assert msg.data is not None
        out.append(events_pb2.UsageEvent.FromString(msg.data))
    return out
