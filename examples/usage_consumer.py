"""An analytics consumer of tokenrt usage events: live spend per model.

Subscribes to `tokenrt.usage.v1.>` (every org and project; narrow it with --org and
--project) through a JetStream ordered consumer, so nothing is missed across a NATS
reconnect and it can start from the past with --since. It needs only nats-py and the
generated `tokenrt.v1` protobuf code; it does not talk to the ledger.

    python examples/usage_consumer.py                  # from now on, refresh every 2 s
    python examples/usage_consumer.py --since 1h       # replay the last hour first
    python examples/usage_consumer.py --org acme --project web --every 10

Money arrives as integer nano-USD (`cost_nusd`) and is summed as integers; it is shown
in dollars with Decimal, never through a float.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import nats
from nats.js import api

from tokenrt.v1 import events_pb2
from tokenrt_usage.subjects import usage_filter


@dataclass
class ModelSpend:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nusd: int = 0
    cache_saved_nusd: int = 0


def usd(nusd: int) -> str:
    return f"${Decimal(nusd) / Decimal(1_000_000_000):.9f}"


def render(spend: dict[str, ModelSpend]) -> str:
    lines = [f"{'MODEL':<28} {'REQUESTS':>9} {'INPUT':>12} {'OUTPUT':>10} {'SPEND':>16} "
             f"{'CACHE SAVED':>16}"]
    for model, s in sorted(spend.items(), key=lambda kv: -kv[1].cost_nusd):
        lines.append(f"{model:<28} {s.requests:>9} {s.input_tokens:>12} {s.output_tokens:>10} "
                     f"{usd(s.cost_nusd):>16} {usd(s.cache_saved_nusd):>16}")
    total = sum(s.cost_nusd for s in spend.values())
    lines.append(f"{'total':<28} {sum(s.requests for s in spend.values()):>9} "
                 f"{'':>12} {'':>10} {usd(total):>16}")
    return "\n".join(lines)


def parse_since(text: str) -> datetime:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nats-url", default=os.environ.get("TOKENRT_NATS_URL",
                                                             "nats://127.0.0.1:4222"))
    parser.add_argument("--prefix", default=os.environ.get("TOKENRT_USAGE_SUBJECT_PREFIX",
                                                           "tokenrt.usage.v1"))
    parser.add_argument("--org", default="")
    parser.add_argument("--project", default="")
    parser.add_argument("--since", default="", help="replay from this long ago: 90s, 15m, 1h, 7d")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between tables")
    parser.add_argument("--exit-after", type=int, default=0,
                        help="print the table and stop after N events (0 = run until Ctrl-C)")
    args = parser.parse_args()

    nc = await nats.connect(args.nats_url, connect_timeout=5, max_reconnect_attempts=-1)
    js = nc.jetstream()
    if args.since:
        config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_TIME,
                                    opt_start_time=parse_since(args.since).isoformat())
    else:
        config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.NEW)
    subject = usage_filter(args.prefix, args.org, args.project)
    sub = await js.subscribe(subject, ordered_consumer=True, config=config)
    print(f"# live spend per model on {subject}", flush=True)

    spend: dict[str, ModelSpend] = defaultdict(ModelSpend)
    seen, shown_at = 0, time.monotonic()
    try:
        async for msg in sub.messages:
            event = events_pb2.UsageEvent()
            try:
                event.ParseFromString(msg.data)
            except Exception:
                continue  # not a UsageEvent; the ledger dead-letters such messages
            s = spend[event.served_model or "(none)"]
            s.requests += 1
            s.input_tokens += event.usage.input_tokens
            s.output_tokens += event.usage.output_tokens
            s.cost_nusd += event.cost_nusd
            s.cache_saved_nusd += event.cache_saved_cost_nusd
            seen += 1
            if args.exit_after and seen >= args.exit_after:
                break
            if time.monotonic() - shown_at >= args.every:
                print(render(spend) + "\n", flush=True)
                shown_at = time.monotonic()
    finally:
        print(render(spend), flush=True)
        await nc.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
