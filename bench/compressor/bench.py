"""Compressor benchmark (issue 7).

1. Speed: a ~200k-token IDE conversation (files read by tools, re-read after edits, pasted
   code, chatter) compressed to 30k tokens, per strategy, in-process (what the service's
   worker thread runs: counting + compression) and through gRPC Compress on a real process.
   "cold" = the count cache has never seen the text (the first request of a session);
   "warm" = it has (every later request re-sends the same context). Summarisation is
   excluded from the target and reported apart. Wall time and CPU time (this process's,
   in-process; the server process's from /proc, through gRPC) are both given, with the
   load average: on a shared 2-core machine wall time mostly measures the other tenants.
2. Retention: conversations whose last question names earlier files and functions,
   compressed 4x; the share of named references still shown in the output (the file's
   content, the function's definition), per strategy.

Run: make bench-compressor   (or .venv/bin/python bench/compressor/bench.py [speed] [grpc]
     [retention]: only the parts named)
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
sys.path.insert(0, str(ROOT / "services" / "compressor" / "tests"))

import grpc  # noqa: E402
from compressor_chats import ide_conversation  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

import tokenrt_pricing  # noqa: E402
from tokenrt.v1 import common_pb2, compressor_pb2, compressor_pb2_grpc  # noqa: E402
from tokenrt_common.settings import load_settings  # noqa: E402
from tokenrt_compressor import core  # noqa: E402
from tokenrt_compressor.counting import CounterMeter  # noqa: E402
from tokenrt_compressor.summary import Extractive  # noqa: E402
from tokenrt_counter.chunks import CountCache  # noqa: E402
from tokenrt_counter.core import Counter  # noqa: E402
from tokenrt_counter.tokenizers import Tokenizers  # noqa: E402
from tokenrt_testkit.cpu import thread_cpu_seconds  # noqa: E402
from tokenrt_testkit.stack import stack_env  # noqa: E402

SPEED_STRATEGIES = ("truncate", "selective_forget", "code_aware", "incremental",
                    "prefix_stable", "auto")
RETENTION_STRATEGIES = ("truncate", "selective_forget", "code_aware", "incremental",
                        "summarize", "prefix_stable", "auto")
# Also with the session's previous turn sent (its output, at the same target): prefix_stable
# then keeps that prefix, chosen for the previous question, and auto takes prefix_stable.
WITH_SESSION = ("prefix_stable", "auto")
ROUNDS = 15
FIRST_ROUNDS = 3  # fresh processes per strategy


TOKENIZERS = Tokenizers()  # what the service uses; loaded once, like the service


def new_meter(entry: tokenrt_pricing.ModelEntry) -> CounterMeter:
    return CounterMeter(Counter(TOKENIZERS, CountCache(256 << 20)), entry)


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def timed(meter: CounterMeter, chat: list, target: int, strategy: str,
          session: core.Session | None) -> tuple[float, float, core.Result]:
    """(wall ms, CPU ms, result) of what the service's worker thread runs."""
    start, cpu = time.perf_counter(), time.thread_time()
    m = meter.measure(chat, [])
    result = core.compress(chat, m.per_message, m.fixed, target, strategy, meter, core.Options(),
                           session, Extractive(meter.text).summarize_now, m.digests)
    return (time.perf_counter() - start) * 1000, (time.thread_time() - cpu) * 1000, result


def once(meter: CounterMeter, chat: list, target: int, strategy: str,
         session: core.Session | None) -> tuple[float, core.Result]:
    wall, _, result = timed(meter, chat, target, strategy, session)
    return wall, result


def speed(entry: tokenrt_pricing.ModelEntry) -> list:
    chat, _ = ide_conversation(random.Random(1), files=60, turns=170, lines=40, asked=6)
    meter = new_meter(entry)
    total = meter.total(chat, [])
    gc.collect()
    gc.freeze()  # as the service does after start-up (tokenizers, catalog, modules)
    print(f"speed: {len(chat)} messages, {total} tokens -> 30000 (gpt-4o, o200k_base); {load()}")
    print(f"  {'strategy':<17}{'cold wall/cpu ms':>18}{'warm p50 wall/cpu':>19}"
          f"{'warm p95 wall':>15}{'out tokens':>12}")
    first = once(meter, chat[:-1], 30_000, "selective_forget", None)[1]
    session = core.Session(first.sent, frozenset(first.seen))
    for strategy in (*SPEED_STRATEGIES, "summarize"):
        cold_meter = new_meter(entry)
        s = session if strategy in ("prefix_stable", "auto", "incremental") else None
        cold, cold_cpu, result = timed(cold_meter, chat, 30_000, strategy, s)
        warm = [timed(cold_meter, chat, 30_000, strategy, s)[:2] for _ in range(ROUNDS)]
        walls = sorted(w for w, _ in warm)
        cpus = sorted(c for _, c in warm)
        p95 = walls[min(len(walls) - 1, int(len(walls) * 0.95))]
        tag = "  (summarisation, excluded from the target)" if strategy == "summarize" else ""
        print(f"  {strategy:<17}{cold:>10.1f}/{cold_cpu:<7.1f}{statistics.median(walls):>11.1f}/"
              f"{statistics.median(cpus):<7.1f}{p95:>15.1f}{result.compressed_tokens:>12}{tag}")
    print(f"  ({load()})")
    return chat


def shown(output: list, ref: str) -> bool:
    text = "\n".join(p.text for m in output[:-1] for p in m.content if p.HasField("text"))
    if ref.endswith(".py"):
        return f"# {ref}\n" in text  # the file's content (its first line), not a stub
    return f"def {ref}(" in text


def retention(entry: tokenrt_pricing.ModelEntry) -> None:
    meter = new_meter(entry)
    rows = [*RETENTION_STRATEGIES, *(f"{s}+session" for s in WITH_SESSION)]
    hits = dict.fromkeys(rows, 0)
    total_refs = 0
    ratios: dict[str, list[float]] = {s: [] for s in rows}
    for seed in range(20):
        chat, refs = ide_conversation(random.Random(100 + seed), files=30, turns=40, lines=30,
                                      asked=4)
        refs = [r for r in refs if shown(chat, r)]  # references actually shown earlier
        total = meter.total(chat, [])
        total_refs += len(refs)
        for row in rows:
            strategy, _, warm = row.partition("+")
            session = None
            if warm:
                before = once(meter, chat[:-1], total // 4, strategy, None)[1]
                session = core.Session(before.sent, frozenset(before.seen))
            _, result = once(meter, chat, total // 4, strategy, session)
            assert result.compressed_tokens <= total // 4
            ratios[row].append(result.compressed_tokens / total)
            hits[row] += sum(shown(result.messages, r) for r in refs)
    print(f"retention after 4x compression: 20 conversations, {total_refs} named references "
          "(files and functions shown earlier)")
    for row in rows:
        print(f"  {row:<22}{100 * hits[row] / total_refs:6.1f}% kept "
              f"(mean size {100 * statistics.mean(ratios[row]):.1f}% of the original)")


def request_for(chat: list, strategy: str, session: str) -> compressor_pb2.CompressRequest:
    return compressor_pb2.CompressRequest(
        model="gpt-4o", messages=chat, target_tokens=30_000,
        strategy=common_pb2.CompressionStrategy.Value("COMPRESSION_STRATEGY_" + strategy.upper()),
        session_id=session, tenant=common_pb2.Tenant(org_id="bench", project_id="bench"),
        dry_run=bool(session))  # the session stays as seeded: every process sees the same


async def serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for _ in range(1200):
        try:
            if (await health.Check(health_pb2.HealthCheckRequest(), timeout=1)).status == 1:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("the compressor did not report SERVING within 60 s")


def channel_to(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=[
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.max_receive_message_length", 64 << 20)])


async def timed_call(stub: compressor_pb2_grpc.CompressorServiceStub, pid: int,
                     request: compressor_pb2.CompressRequest) -> tuple[float, float]:
    """(wall ms, server CPU ms) of one Compress."""
    cpu, start = 1000 * thread_cpu_seconds(pid), time.perf_counter()
    await stub.Compress(request, timeout=60)
    return (time.perf_counter() - start) * 1000, 1000 * thread_cpu_seconds(pid) - cpu


async def over_grpc(chat: list, address: str, pid: int) -> None:
    async with channel_to(address) as channel:
        await serving(channel)
        stub = compressor_pb2_grpc.CompressorServiceStub(channel)
        request = request_for(chat, "selective_forget", "")
        await asyncio.sleep(1)  # let start-up work settle before reading the server's CPU
        calls = [await timed_call(stub, pid, request) for _ in range(ROUNDS + 1)]
        warm = sorted(w for w, _ in calls[1:])
        print(f"gRPC Compress (selective_forget, {request.ByteSize()} bytes), one process: "
              f"first {calls[0][0]:.1f} ms (server CPU {calls[0][1]:.1f} ms), then p50 "
              f"{statistics.median(warm):.1f} ms, max {warm[-1]:.1f} ms (server CPU "
              f"{statistics.median(c for _, c in calls[1:]):.1f} ms a call, median); {load()}")


class Service:
    """A compressor process of the bench's own (started outside any event loop)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.address = load_settings(env).endpoint("compressor").address
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "tokenrt_compressor"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


async def seed_sessions(service: Service, chat: list) -> None:
    """The session state a restarted replica finds in Redis: the previous turn's request."""
    async with channel_to(service.address) as channel:
        await serving(channel)
        stub = compressor_pb2_grpc.CompressorServiceStub(channel)
        for strategy in ("incremental", "prefix_stable", "auto"):
            request = request_for(chat[:-1], strategy, f"bench-{strategy}")
            request.dry_run = False
            await stub.Compress(request, timeout=60)


async def first_calls(service: Service, strategy: str, chat: list, other: list
                      ) -> tuple[float, float, list[tuple[float, float]]]:
    """(start-up wall ms, start-up CPU ms, [(wall, CPU) of: the first request, a second
    request of another never-seen conversation, the first conversation again])."""
    pid = service.proc.pid
    async with channel_to(service.address) as channel:
        await serving(channel)
        up_wall = (time.perf_counter() - service.started) * 1000
        up_cpu = 1000 * thread_cpu_seconds(pid)
        stub = compressor_pb2_grpc.CompressorServiceStub(channel)
        await asyncio.sleep(0.5)
        session = f"bench-{strategy}" if strategy in ("incremental", "prefix_stable",
                                                      "auto") else ""
        calls = [await timed_call(stub, pid, request_for(c, strategy, session))
                 for c in (chat, other, chat)]
        return up_wall, up_cpu, calls


def wall_cpu(rounds: list, k: int) -> str:
    """The k-th call's median wall / median server CPU over `rounds` of first_calls."""
    return (f"{statistics.median(r[2][k][0] for r in rounds):.1f}/"
            f"{statistics.median(r[2][k][1] for r in rounds):.1f}")


def grpc_round(chat: list) -> None:
    other, _ = ide_conversation(random.Random(2), files=60, turns=170, lines=40, asked=6)
    with tempfile.TemporaryDirectory() as tmp:
        env = stack_env(Path(tmp), TOKENRT_LOG_LEVEL="warning")
        service = Service(env)
        try:
            asyncio.run(over_grpc(chat, service.address, service.proc.pid))
            asyncio.run(seed_sessions(service, chat))
        finally:
            service.stop()
        print(f"first requests: a fresh process per strategy and round ({FIRST_ROUNDS} rounds, "
              f"medians; the session strategies' session was seeded by an earlier process); "
              f"{load()}")
        print(f"  {'strategy':<17}{'start-up wall/CPU':>19}{'1st: cold':>16}"
              f"{'2nd: other, cold':>19}{'3rd: warm':>16}{'1st-2nd CPU':>13}"
              "   (wall/server CPU ms)")
        for strategy in SPEED_STRATEGIES:
            rounds = []
            for _ in range(FIRST_ROUNDS):
                service = Service(env)
                try:
                    rounds.append(asyncio.run(first_calls(service, strategy, chat, other)))
                finally:
                    service.stop()
            med = statistics.median
            up = f"{med(r[0] for r in rounds):.0f}/{med(r[1] for r in rounds):.0f}"
            cells = "".join(f"{wall_cpu(rounds, k):>{n}}" for k, n in enumerate((16, 19, 16)))
            extra = med(r[2][0][1] - r[2][1][1] for r in rounds)
            print(f"  {strategy:<17}{up:>19}{cells}{extra:>13.1f}")
        print(f"  ({load()})")


def main() -> None:
    """All parts, or those named: `bench.py [speed] [grpc] [retention]`."""
    parts = set(sys.argv[1:]) or {"speed", "grpc", "retention"}
    entry = tokenrt_pricing.load().resolve("gpt-4o").entry
    if "speed" in parts:
        chat = speed(entry)
    else:
        chat, _ = ide_conversation(random.Random(1), files=60, turns=170, lines=40, asked=6)
    if "grpc" in parts:
        grpc_round(chat)
    if "retention" in parts:
        retention(entry)


if __name__ == "__main__":
    main()
