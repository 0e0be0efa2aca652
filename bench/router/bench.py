"""Router benchmark: router-added latency and throughput with the full pipeline on.

Starts the simulator (no artificial latency) and a whole stack (`tokenrt up --detach`, its
router configured with a bench API key and the simulator as upstream). A DENY limit sits
on the org, so every request is counted (counter), looked up (cache; unique prompts with
temperature 0: a real miss, then a store off the path), reserved and committed (budget),
and published (usage event to NATS, into the ledger).

  added latency = p50 through tokenrt − p50 directly to the simulator, same bodies, at
  concurrency 1, 16 and 64 (targets: added p50 <= 3 ms at 1; >= 1,000 req/s at 64).

Run: `make bench-router` (or `.venv/bin/python bench/router/bench.py [--seconds 5]
[--levels 1,16,64] [--env NAME=VALUE] [--json]`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2, router_pb2, router_pb2_grpc
from tokenrt_testkit.stack import Stack, free_ports, stack_env

T = common_pb2
KEY = "trk_bench_" + uuid.uuid4().hex
ORG = "bench-" + uuid.uuid4().hex[:8]
SYSTEM = "You are a coding assistant in an IDE. Answer briefly."
MAX_OUT = 64


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def start_sim(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "tokenrt_router.sim.cli", "sim", "--port",
                             str(port)], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("simulator did not start")


def prompt(i: int) -> str:
    return f"Explain what this function does, request {i} {uuid.uuid4().hex}: def f(x): return x*2"


async def run_level(call: Any, concurrency: int, seconds: float) -> dict[str, float]:
    lat: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                await call(next(counter))
                lat.append((time.perf_counter() - t) * 1000)
            except Exception:  # counted and reported, never hidden
                errors += 1
    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.monotonic() - t0
    return {"n": len(lat), "errors": errors, "rps": len(lat) / wall, "p50_ms": pct(lat, 50),
            "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99)}


async def bench(sim_port: int, router_addr: str, budget_addr: str, seconds: float,
                levels: list[int]) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(budget_addr) as bch:
        await budget_pb2_grpc.BudgetServiceStub(bch).SetLimit(budget_pb2.SetLimitRequest(
            limit=budget_pb2.Limit(scope=T.Scope(kind=T.SCOPE_KIND_ORG, org_id=ORG),
                                   metric=T.LIMIT_METRIC_COST, period=T.LIMIT_PERIOD_MONTH,
                                   limit=10**15, action=T.LIMIT_ACTION_DENY)), timeout=10)
    out: dict[str, Any] = {"levels": await compare(sim_port, router_addr, seconds, levels)}
    out["max_rps"] = max(v["through"]["rps"] for v in out["levels"].values())
    return out


async def compare(sim_port: int, router_addr: str, seconds: float,
                  levels: list[int]) -> dict[int, Any]:
    """At each concurrency, the same bodies straight to the simulator, then through the
    RouterService at `router_addr` (tokenrt's, or ceiling.py's bare proxy)."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    url = f"http://127.0.0.1:{sim_port}/v1/chat/completions"

    async def direct(i: int) -> None:
        body = {"model": "gpt-4o-mini", "max_tokens": MAX_OUT, "temperature": 0,
                "messages": [{"role": "system", "content": SYSTEM},
                             {"role": "user", "content": prompt(i)}]}
        async with session.post(url, json=body) as r:
            if r.status != 200:
                raise RuntimeError(r.status)
            await r.read()

    channel = grpc.aio.insecure_channel(router_addr)
    stub = router_pb2_grpc.RouterServiceStub(channel)
    meta = (("authorization", f"Bearer {KEY}"),)

    async def through(i: int) -> None:
        req = router_pb2.CompleteRequest(
            session_id=f"s{i % 50}",
            messages=[T.Message(role=T.ROLE_SYSTEM, content=[T.ContentPart(text=SYSTEM)]),
                      T.Message(role=T.ROLE_USER, content=[T.ContentPart(text=prompt(i))])],
            sampling=T.SamplingParams(temperature=0.0, max_output_tokens=MAX_OUT),
            preferences=router_pb2.RoutingPreferences(forced_model="sim/gpt-4o-mini"))
        await stub.Complete(req, metadata=meta, timeout=10)

    await run_level(through, 4, 1.0)  # warm channels, caches, tokenizers
    await run_level(direct, 4, 1.0)
    out: dict[int, Any] = {}
    for c in levels:
        d = await run_level(direct, c, seconds)
        r = await run_level(through, c, seconds)
        out[c] = {"direct": d, "through": r, "added_p50_ms": r["p50_ms"] - d["p50_ms"],
                  "added_p99_ms": r["p99_ms"] - d["p99_ms"]}
    await session.close()
    await channel.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--levels", default="1,16,64")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for the stack's processes only (not this client), to "
                         "measure what it changes")
    args = ap.parse_args()
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[2].parent
                                                    / "shared" / "tiktoken"))
    sim_port = free_ports(1)[0]
    sim = start_sim(sim_port)
    state = Path(tempfile.mkdtemp(prefix="bench-router-"))
    stack = Stack(stack_env(state, TOKENRT_ROUTER_KEYS=f"{KEY}={ORG}/web",
                            TOKENRT_ROUTER_SIM_BASE_URL=f"http://127.0.0.1:{sim_port}/v1",
                            TOKENRT_LOG_LEVEL="warning",
                            TIKTOKEN_CACHE_DIR=os.environ["TIKTOKEN_CACHE_DIR"],
                            **dict(item.split("=", 1) for item in args.env)))
    try:
        stack.up()
        s = stack.settings
        result = asyncio.run(bench(sim_port, s.endpoint("router").address,
                                   s.endpoint("budget").address, args.seconds,
                                   [int(x) for x in args.levels.split(",")]))
    finally:
        stack.down()
        sim.terminate()
        sim.wait(10)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"router bench, {args.seconds:g}s per level, full pipeline "
          "(count, cache miss + store, budget reserve/commit, usage event)")
    print(f"{'conc':>4} {'direct p50':>10} {'tokenrt p50':>11} {'added p50':>9} "
          f"{'added p99':>9} {'tokenrt p99':>11} {'req/s':>7} {'errors':>6}")
    for c, v in result["levels"].items():
        d, r = v["direct"], v["through"]
        print(f"{c:>4} {d['p50_ms']:>10.2f} {r['p50_ms']:>11.2f} {v['added_p50_ms']:>9.2f} "
              f"{v['added_p99_ms']:>9.2f} {r['p99_ms']:>11.2f} {r['rps']:>7.0f} {r['errors']:>6}")
    print(f"max throughput through tokenrt: {result['max_rps']:.0f} req/s "
          "(targets: added p50 <= 3 ms at 1; >= 1,000 req/s at 64)")


if __name__ == "__main__":
    main()
