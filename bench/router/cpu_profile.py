"""Where a router request's CPU goes: CPU per request of every process (one at a time,
or `--concurrency N` in flight).

Starts the simulator and a whole stack the way bench.py does (full pipeline: count, cache
miss + store, budget reserve + commit, usage event into the ledger), warms it up, then
sends N requests through `Complete` (one at a time unless `--concurrency`) and reads each
process's user + system CPU from /proc/<pid>/stat before and after:

  the six services, the simulator, this client, the shared Redis / NATS / PostgreSQL
  servers (found by their listening ports), and the PostgreSQL backends whose client
  sockets belong to this stack's services (the other backends are other people's).

Redis, NATS and the non-stack PostgreSQL processes are shared with whatever else runs
on the machine, so their figures are an upper bound; the load average is printed with
the figures. `--variant` changes what each request asks for, to attribute a step by
difference: `no-cache` (the request's cache policy says no_cache + no_store, so no
lookup and no store), `hit` (the same prompt every time: cache hits after the first),
`ide` (or `--ide`: what an IDE backend sends, the same ~150 KB of source files in every
request and a new question after them, so a cache miss each time; compression off, to
see the counting and the hops that carry the context).

`--spy router,cache` also records the named processes with py-spy (`--native`) during
a second window of the same requests and prints their hottest frames (inclusive and
self, idle samples left out); py-spy from `--py-spy` (default /tmp/pyspy/bin/py-spy,
installed with `pip install py-spy --target /tmp/pyspy`).

Run: `TIKTOKEN_CACHE_DIR=/work/shared/tiktoken .venv/bin/python bench/router/cpu_profile.py
[--requests 500] [--variant miss|no-cache|hit|ide] [--ide] [--env TOKENRT_X=V] [--spy router]
[--json]`.
`--env` passes settings to the stack, to measure what one changes (for example
TOKENRT_ROUTER_FLUSH_MS, how long the router gathers off-path work into one call).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import KEY, MAX_OUT, ORG, SYSTEM, prompt, start_sim  # noqa: E402
from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2, router_pb2, router_pb2_grpc  # noqa: E402
from tokenrt_testkit.cpu import TICKS, cpu_seconds  # noqa: E402
from tokenrt_testkit.stack import Stack, free_ports, stack_env  # noqa: E402

T = common_pb2
IDLE_LEAVES = ("epoll_wait", "poll (", "select (", "pthread_cond_wait", "futex", "nanosleep",
               "clock_nanosleep", "accept", "sem_wait", "read (libc", "PyThread_acquire_lock")


def _sockets() -> dict[int, tuple[int, int, str]]:
    """inode -> (local port, remote port, state) of every IPv4/IPv6 TCP socket."""
    out: dict[int, tuple[int, int, str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, remote, state, inode = f[1], f[2], f[3], int(f[9])
            out[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16),
                          state)
    return out


def _inodes(pid: int) -> set[int]:
    found = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                found.add(int(target[8:-1]))
    except OSError:
        pass
    return found


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def listener(port: int, sockets: dict[int, tuple[int, int, str]]) -> int | None:
    """The pid listening on a TCP port (state 0A = LISTEN)."""
    wanted = {i for i, (lp, _rp, st) in sockets.items() if lp == port and st == "0A"}
    for pid in _all_pids():
        if _inodes(pid) & wanted:
            return pid
    return None


def postgres_backends(pg_port: int, clients: list[int],
                      sockets: dict[int, tuple[int, int, str]]) -> tuple[list[int], list[int]]:
    """(backends serving `clients`' connections, every other postgres process)."""
    client_ports = {sockets[i][0] for pid in clients for i in _inodes(pid)
                    if i in sockets and sockets[i][1] == pg_port}
    ours: list[int] = []
    rest: list[int] = []
    for pid in _all_pids():
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if name != "postgres":
            continue
        remote = {sockets[i][1] for i in _inodes(pid) if i in sockets and sockets[i][0] == pg_port}
        (ours if remote & client_ports else rest).append(pid)
    return ours, rest


def rpc_counts(metrics_ports: dict[str, int]) -> dict[str, float]:
    """gRPC calls each service has handled so far, by method (its Prometheus counter)."""
    out: dict[str, float] = {}
    for service, port in metrics_ports.items():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            continue
        for m in re.finditer(r'^tokenrt_grpc_requests_total\{([^}]*)\} ([0-9.e+]+)$', text,
                             re.MULTILINE):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            method = labels.get("method", "").rsplit("/", 1)[-1]
            if method in ("Check", "Watch") or not method:
                continue
            key = f"{service}.{method}"
            out[key] = out.get(key, 0.0) + float(m.group(2))
    return out


def spy_summary(raw: Path, top: int) -> dict[str, list[tuple[str, float]]]:
    """Hottest frames of a py-spy raw file: inclusive and self shares of the busy samples."""
    incl: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")
                  if not f.startswith("0x")]
        if not frames or frames[-1].startswith(IDLE_LEAVES) or "serve_forever" in stack:
            continue
        busy += int(n)
        for f in set(frames):
            incl[f] += int(n)
        leaf[frames[-1]] += int(n)

    def share(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(v * 100 / max(busy, 1), 1)) for k, v in c.most_common(top)]

    return {"inclusive_pct": share(incl), "self_pct": share(leaf)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sim_port = free_ports(1)[0]
    sim = start_sim(sim_port)
    state = Path(tempfile.mkdtemp(prefix="cpu-profile-"))
    overrides = dict(item.split("=", 1) for item in args.env)
    stack = Stack(stack_env(state, TOKENRT_ROUTER_KEYS=f"{KEY}={ORG}/web",
                            TOKENRT_ROUTER_SIM_BASE_URL=f"http://127.0.0.1:{sim_port}/v1",
                            TOKENRT_LOG_LEVEL="warning",
                            TIKTOKEN_CACHE_DIR=os.environ["TIKTOKEN_CACHE_DIR"], **overrides))
    try:
        stack.up()
        return await measure(args, stack, sim)
    finally:
        stack.down()
        sim.terminate()
        sim.wait(10)


async def measure(args: argparse.Namespace, stack: Stack,
                  sim: subprocess.Popen[bytes]) -> dict[str, Any]:
    s = stack.settings
    async with grpc.aio.insecure_channel(s.endpoint("budget").address) as bch:
        await budget_pb2_grpc.BudgetServiceStub(bch).SetLimit(budget_pb2.SetLimitRequest(
            limit=budget_pb2.Limit(scope=T.Scope(kind=T.SCOPE_KIND_ORG, org_id=ORG),
                                   metric=T.LIMIT_METRIC_COST, period=T.LIMIT_PERIOD_MONTH,
                                   limit=10**15, action=T.LIMIT_ACTION_DENY)), timeout=10)
    channel = grpc.aio.insecure_channel(s.endpoint("router").address)
    stub = router_pb2_grpc.RouterServiceStub(channel)
    meta = (("authorization", f"Bearer {KEY}"),)
    cache = router_pb2.RoutingPreferences(forced_model="sim/gpt-4o-mini")
    if args.variant == "no-cache":
        cache.cache.no_cache = cache.cache.no_store = True
    files = ide_files() if args.variant == "ide" else []
    if files:
        cache.compression.mode = router_pb2.COMPRESSION_MODE_OFF

    async def one(i: int) -> float:
        text = prompt(0 if args.variant == "hit" else i)
        if args.variant == "hit":
            text = "Explain what this function does: def f(x): return x*2"
        req = router_pb2.CompleteRequest(
            session_id=f"s{i % 50}",
            messages=[T.Message(role=T.ROLE_SYSTEM, content=[T.ContentPart(text=SYSTEM)]),
                      *files,
                      T.Message(role=T.ROLE_USER, content=[T.ContentPart(text=text)])],
            sampling=T.SamplingParams(temperature=0.0, max_output_tokens=MAX_OUT),
            preferences=cache)
        t0 = time.perf_counter()
        await stub.Complete(req, metadata=meta, timeout=10)
        return time.perf_counter() - t0

    for i in range(args.warmup):
        await one(i)
    await asyncio.sleep(1.0)  # let the warm-up's off-path work settle

    status = stack.status()["services"]
    procs: dict[str, list[int]] = {name: [int(v["pid"])] for name, v in status.items()}
    procs["simulator"] = [sim.pid]
    procs["client (this bench)"] = [os.getpid()]
    sockets = _sockets()
    services = [p for name in status for p in procs[name]]
    for kind, url in (("redis", s.redis_url), ("nats", s.nats_url)):
        port = urlsplit(url).port
        pid = listener(port, sockets) if port else None
        if pid is not None:
            procs[f"{kind} (shared)"] = [pid]
    pg_port = urlsplit(s.postgres_dsn).port or 5432
    ours, rest = postgres_backends(pg_port, services, sockets)
    procs["postgres backends of this stack"] = ours
    procs["postgres, everything else (shared)"] = rest

    def snapshot() -> dict[int, float]:
        return {p: cpu_seconds(p) for pids in procs.values() for p in pids}

    ports = {name: s.endpoint(name).metrics_port for name in status}
    load0 = os.getloadavg()
    calls0 = rpc_counts(ports)
    before = snapshot()
    wall0 = time.perf_counter()
    lat = await run_all(one, args.warmup, args.requests, args.concurrency)
    await asyncio.sleep(args.settle)  # off-path work of the last requests
    wall = time.perf_counter() - wall0 - args.settle
    after = snapshot()
    calls1 = rpc_counts(ports)
    n = args.requests
    # A process that exited in between (another user's PostgreSQL backend) is left out.
    per_request = {name: round(sum(after[p] - before[p] for p in pids
                                   if after[p] > 0 and p in before) / n * 1000, 3)
                   for name, pids in procs.items()}
    stack_total = sum(v for k, v in per_request.items()
                      if "shared" not in k and not k.startswith("client"))
    lat.sort()
    out: dict[str, Any] = {
        "variant": args.variant, "env": args.env, "requests": n,
        "concurrency": args.concurrency,
        "request_bytes": len(files) and sum(f.ByteSize() for f in files),
        "p50_ms": round(lat[n // 2] * 1000, 2), "p90_ms": round(lat[int(n * 0.9)] * 1000, 2),
        "wall_ms_per_request": round(wall / n * 1000, 2),
        "cpu_ms_per_request": dict(sorted(per_request.items(), key=lambda kv: -kv[1])),
        "cpu_ms_per_request_stack_only": round(stack_total, 3),
        "cpu_ms_per_request_all": round(sum(per_request.values()), 3),
        "grpc_calls_per_request": {k: round((v - calls0.get(k, 0.0)) / n, 2)
                                   for k, v in sorted(calls1.items())
                                   if v - calls0.get(k, 0.0) > 0},
        "pids": procs, "load_before_after": [load0, os.getloadavg()],
        "clock_tick_ms": round(1000 / TICKS, 1),
    }
    if args.spy:
        out["py_spy"] = await spy(args, procs, one, args.warmup + n)
    await channel.close()
    return out


async def run_all(one: Any, first: int, n: int, concurrency: int) -> list[float]:
    """Requests first .. first + n - 1, `concurrency` in flight at a time."""
    if concurrency <= 1:
        return [await one(first + i) for i in range(n)]
    numbers = iter(range(first, first + n))
    lat: list[float] = []

    async def worker() -> None:
        for i in numbers:
            lat.append(await one(i))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat


def ide_files(count: int = 12, lines: int = 104) -> list[common_pb2.Message]:
    """The IDE context: `count` source files of `lines` functions each (~150 KB), one user
    message per file, identical in every request."""
    out = []
    for f in range(count):
        body = "\n".join(f"def handler_{f}_{i}(request: dict, retries: int = {i % 5}) -> dict:\n"
                         f"    return {{'id': request.get('id'), 'step': {i}, 'file': {f}}}"
                         for i in range(lines))
        out.append(T.Message(role=T.ROLE_USER, content=[
            T.ContentPart(text=f"<file path='src/service_{f}.py'>\n{body}\n</file>")]))
    return out


async def spy(args: argparse.Namespace, procs: dict[str, list[int]], one: Any,
              start: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="cpu-profile-spy-"))
    running = []
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(args.py_spy).parent.parent)  # a `pip --target` install
    for name in args.spy.split(","):
        raw = folder / f"{name}.raw"
        cmd = [args.py_spy, "record", "-p", str(procs[name][0]), "-d", str(args.spy_seconds),
               "-r", "200", "--native", "-f", "raw", "-o", str(raw)]
        running.append((name, raw, await asyncio.create_subprocess_exec(
            *cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    stop = time.monotonic() + args.spy_seconds + 1
    i = start
    while time.monotonic() < stop:
        await one(i)
        i += 1
    result: dict[str, Any] = {"folder": str(folder)}
    for name, raw, proc in running:
        await asyncio.wait_for(proc.wait(), 60)
        result[name] = spy_summary(raw, args.top) if raw.exists() else "py-spy wrote nothing"
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds to wait after the last request for its off-path work")
    ap.add_argument("--concurrency", type=int, default=1,
                    help="requests in flight (default 1: one at a time)")
    ap.add_argument("--variant", choices=("miss", "no-cache", "hit", "ide"), default="miss")
    ap.add_argument("--ide", action="store_true", help="the same as --variant ide")
    ap.add_argument("--env", action="append", default=[], metavar="TOKENRT_X=VALUE",
                    help="a setting for the stack (repeatable), e.g. TOKENRT_ROUTER_FLUSH_MS=50")
    ap.add_argument("--spy", default="", help="comma-separated process names for py-spy")
    ap.add_argument("--spy-seconds", type=int, default=10)
    ap.add_argument("--py-spy", default="/tmp/pyspy/bin/py-spy")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.ide:
        args.variant = "ide"
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[2].parent
                                                    / "shared" / "tiktoken"))
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"variant {result['variant']} {' '.join(result['env'])}: "
          f"{result['requests']} requests, {result['concurrency']} in flight, "
          f"p50 {result['p50_ms']} ms, p90 {result['p90_ms']} ms, "
          f"wall {result['wall_ms_per_request']} ms per request"
          + (f", {result['request_bytes']} bytes of files in each" if result["request_bytes"]
             else ""))
    print("CPU per request (ms), from /proc (clock tick "
          f"{result['clock_tick_ms']} ms, so use >= 300 requests):")
    for name, ms in result["cpu_ms_per_request"].items():
        print(f"  {ms:8.3f}  {name}")
    print(f"  {result['cpu_ms_per_request_stack_only']:8.3f}  = the stack's own processes")
    print(f"  {result['cpu_ms_per_request_all']:8.3f}  = everything listed")
    print("gRPC calls handled per request: " + ", ".join(
        f"{k} {v:g}" for k, v in result["grpc_calls_per_request"].items()))
    print(f"load average before / after: {result['load_before_after']}")
    for name, summary in result.get("py_spy", {}).items():
        if name == "folder":
            print(f"py-spy raw files in {summary}")
            continue
        print(f"py-spy {name}, share of its busy samples:")
        if isinstance(summary, str):
            print("  " + summary)
            continue
        for kind in ("inclusive_pct", "self_pct"):
            print(f"  {kind}:")
            for frame, pct in summary[kind]:
                print(f"    {pct:5.1f}%  {frame[:140]}")


if __name__ == "__main__":
    main()
