"""Start-up work that the first request would otherwise pay for (issue 7).

Before the service reports SERVING, two things:

1. `warm_up` (in `build`, on a worker thread of the service's own pool): every strategy
   compresses a small synthetic IDE conversation once, for one model of every tokenizer
   of the catalog: the tokenizers' first encode, the counter's framing and checks, the
   reference and code regexes, the strategies' code paths (a session's prefix match, the
   extractive summary), the report's protobufs. It is also a self-test: a strategy that
   breaks the target on this conversation stops start-up with the reason.
2. `call_self` (once the server listens): the same conversation through the service's
   own gRPC port, every strategy, with a session: the server's first call of the method,
   the interceptor, request parsing, the Redis session read, the response. Measured on
   the bench (docs/compression.md), this was what a fresh process's first request still
   paid after (1): a few ms of CPU.

The conversation is tiny (about 1,500 tokens), so what it leaves in the count cache is
negligible; the session it reads is never written (dry_run).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import structlog

from tokenrt.v1 import common_pb2, compressor_pb2, compressor_pb2_grpc
from tokenrt_compressor import core
from tokenrt_compressor.counting import CounterMeter
from tokenrt_compressor.summary import Extractive
from tokenrt_counter.core import Counter
from tokenrt_pricing import Catalog, ModelEntry

M = common_pb2.Message
P = common_pb2.ContentPart
R = common_pb2


def conversation() -> list[common_pb2.Message]:
    """A small IDE session: a file read twice (a repeated copy), a pasted block with
    comments and blank runs, chatter, and a last question naming a path and a symbol."""
    body = "".join(f"    step_{k} = value * {k + 3}  # step {k}\n\n\n" for k in range(8))
    source = ("# src/app/core.py\n\"\"\"Core.\"\"\"\nimport os\n\n\n"
              "def handle_request(value, options=None):\n    # scale the value\n"
              f"{body}    total = step_7\n    return total\n")
    edited = source.replace("return total", "return total + 1")
    out = [M(role=R.ROLE_SYSTEM, content=[P(text="You are a coding assistant.")])]
    for n, body in enumerate((source, edited, edited)):
        out.append(M(role=R.ROLE_USER, content=[P(text=f"Turn {n}: read src/app/core.py.")]))
        out.append(M(role=R.ROLE_ASSISTANT, tool_calls=[R.ToolCall(
            id=f"call_{n}", name="read_file", arguments_json='{"path": "src/app/core.py"}')]))
        out.append(M(role=R.ROLE_TOOL, tool_call_id=f"call_{n}", content=[P(text=body)]))
        out.append(M(role=R.ROLE_USER, content=[P(
            text=f"As I have it open:\n```python src/app/core.py\n{body}```")]))
        out.append(M(role=R.ROLE_ASSISTANT, content=[P(
            text="handle_request scales the value and returns it. " * 12)]))
    out.append(M(role=R.ROLE_USER, content=[P(
        text="Why does `handle_request` in src/app/core.py add one now? Fix it.")]))
    return out


def models(catalog: Catalog) -> list[ModelEntry]:
    """One model per tokenizer of the catalog (estimates included: their code runs too)."""
    chosen: dict[str, ModelEntry] = {}
    for entry in catalog.entries():
        chosen.setdefault(entry.tokenizer, entry)
    return [chosen[k] for k in sorted(chosen)]


@dataclass
class Done:
    spent_ms: dict[str, float]  # per strategy, all models
    targets: dict[str, int]  # per model: the target its compressions used


def warm_up(counter: Counter, entries: Sequence[ModelEntry],
            report: Callable[[ModelEntry, core.Result], object] | None = None) -> Done:
    """Compress the synthetic conversation with every strategy for every model in
    `entries` (to half its size, so every strategy has work to do);
    `report`, when given, is called with each result (the servicer builds its response).
    Raises AssertionError when a result breaks the target."""
    chat = conversation()
    done = Done(dict.fromkeys(core.STRATEGIES, 0.0), {})
    options = core.Options(allow_whitespace_collapse=True, allow_comment_removal=True,
                           summary_max_tokens=64, warm_prefix_min_tokens=1)
    for entry in entries:
        meter = CounterMeter(counter, entry)
        measured = meter.measure(chat[:-1], [])
        target = done.targets[entry.name] = (sum(measured.per_message) + measured.fixed) // 2
        earlier = core.compress(chat[:-1], measured.per_message, measured.fixed, target,
                                "truncate", meter, options, core.Session(), None,
                                measured.digests)
        session = core.Session(earlier.sent, frozenset(earlier.seen))
        summarize = Extractive(meter.text).summarize_now
        for strategy in core.STRATEGIES:
            start = time.perf_counter()
            measured = meter.measure(chat, [])
            result = core.compress(chat, measured.per_message, measured.fixed, target,
                                   strategy, meter, options, session, summarize,
                                   measured.digests)
            assert result.compressed_tokens <= target, (entry.name, strategy)
            if report is not None:
                report(entry, result)
            done.spent_ms[strategy] += (time.perf_counter() - start) * 1000
    return done


# The tenant and session of the start-up calls (read, never written: dry_run).
WARM_UP_TENANT = common_pb2.Tenant(org_id="tokenrt-warm-up", project_id="tokenrt-warm-up")


async def call_self(channel: grpc.aio.Channel, model: str, target_tokens: int,
                    log: structlog.stdlib.BoundLogger, timeout_seconds: float = 10.0) -> None:
    """Every strategy once through the service's own port (see the module docstring).
    Failures are logged, not raised: the service serves without this warm-up."""
    stub = compressor_pb2_grpc.CompressorServiceStub(channel)
    chat = conversation()
    start = time.perf_counter()
    failed: dict[str, str] = {}
    try:
        async with asyncio.timeout(timeout_seconds):
            await channel.channel_ready()
            for name, value in common_pb2.CompressionStrategy.items()[1:]:
                try:
                    await stub.Compress(compressor_pb2.CompressRequest(
                        model=model, messages=chat, target_tokens=target_tokens,
                        strategy=value,  # type: ignore[arg-type]
                        session_id="tokenrt-warm-up", tenant=WARM_UP_TENANT, dry_run=True))
                except grpc.aio.AioRpcError as exc:
                    failed[name] = exc.code().name
    except TimeoutError:
        failed["all"] = f"not done within {timeout_seconds:g} s"
    log.info("compressor.warm_up_calls", ms=round((time.perf_counter() - start) * 1000),
             model=model, failed=failed)
