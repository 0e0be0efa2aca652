"""Ledger benchmarks (issue 5), against the real NATS and Postgres of this machine.

1. Sustained ingest: publisher processes publish N events as fast as they can while one
   ledger process consumes; the figure is N / (first publish -> last rollup committed).
   Also the ledger alone draining a backlog of N events it did not see arrive (timed from
   the moment it answers gRPC, over the events it stored after that). Both with the CPU
   each part spent per event, from /proc: publishers, the ledger process, its Postgres
   backends and the NATS server (when they run on this machine). On a machine other
   processes load, CPU per event says more than events/s: it gives the rate the parts
   would reach on two free cores.
2. End-to-end lag at a fixed rate (default 5,000 events/s for 20 s): per event,
   recorded_at (the ledger's clock at insert, just before its commit) - the publish time.
3. A month of one project's usage (default 1M events, written with the ledger's own ingest
   code) summarised from the rollups through the gRPC API: p50 / p99 of QueryUsage.

Everything runs under a private stream, subject prefix, durable and schema, removed at the
end. Usage: python bench/ledger/bench_ledger.py [--events 200000] [--rate 5000]
[--seconds 20] [--month-events 1000000] [--skip ingest,lag,month]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import nats
import structlog

from tokenrt.v1 import ledger_pb2, ledger_pb2_grpc
from tokenrt_common.settings import load_settings
from tokenrt_ledger.core import decode
from tokenrt_ledger.store import LedgerStore
from tokenrt_testkit.cpu import cpu_seconds
from tokenrt_testkit.stack import INFRA_DEFAULTS, free_ports
from tokenrt_usage import Delivery, Publisher, StreamSpec
from tokenrt_usage.testing import make_event

ROOT = Path(__file__).resolve().parents[2]
# Publisher worker processes (spawned) inherit the tag through the environment.
TAG = os.environ.setdefault("LEDGER_BENCH_TAG", uuid.uuid4().hex[:8])
PG_DSN = os.environ.get("TOKENRT_POSTGRES_DSN", INFRA_DEFAULTS["TOKENRT_POSTGRES_DSN"])
NATS_URL = os.environ.get("TOKENRT_NATS_URL", INFRA_DEFAULTS["TOKENRT_NATS_URL"])
ENV = {
    **{k: v for k, v in os.environ.items()
       if not k.startswith("TOKENRT_")},
    "TOKENRT_POSTGRES_DSN": PG_DSN, "TOKENRT_NATS_URL": NATS_URL,
    "TOKENRT_USAGE_STREAM": f"BENCH_{TAG}", "TOKENRT_USAGE_SUBJECT_PREFIX": f"bench{TAG}.usage.v1",
    "TOKENRT_USAGE_DLQ_SUBJECT": f"bench{TAG}.usage.dlq.v1",
    "TOKENRT_LEDGER_DURABLE": f"bench_{TAG}", "TOKENRT_LEDGER_SCHEMA": f"ledger_bench_{TAG}",
    "TOKENRT_LOG_FORMAT": "json", "TOKENRT_LOG_LEVEL": "warning",
    "TOKENRT_STATE_DIR": f"/tmp/tokenrt-bench-{TAG}",
    # Ledger tuning passes through, to compare settings.
    **{k: v for k, v in os.environ.items()
       if k in ("TOKENRT_LEDGER_WRITERS", "TOKENRT_LEDGER_BATCH_SIZE",
                "TOKENRT_LEDGER_BATCH_WAIT_MS")},
}
# The ledger's Postgres connections carry this name, so that its backends can be found.
APP_NAME = f"ledger-bench-{TAG}"
SETTINGS = load_settings(ENV)
SPEC = StreamSpec.from_settings(SETTINGS)
SCHEMA = SETTINGS.ledger_schema
STARTED: list[subprocess.Popen[bytes]] = []  # every ledger process, stopped at the end


def start_ledger() -> tuple[subprocess.Popen[bytes], str]:
    grpc_port, metrics_port = free_ports(2)
    sep = "&" if "?" in PG_DSN else "?"
    env = {**ENV, "TOKENRT_LEDGER_ADDR": f"127.0.0.1:{grpc_port}",
           "TOKENRT_LEDGER_METRICS_PORT": str(metrics_port),
           "TOKENRT_POSTGRES_DSN": f"{PG_DSN}{sep}application_name={APP_NAME}"}
    log = open(f"/tmp/tokenrt-bench-{TAG}-ledger.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "tokenrt_ledger"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=ROOT)
    STARTED.append(proc)
    return proc, f"127.0.0.1:{grpc_port}"


async def wait_ready(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        for _ in range(600):
            try:
                await stub.QueryUsage(ledger_pb2.QueryUsageRequest(), timeout=2)
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
    raise RuntimeError("ledger did not become ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# --- CPU per event, from /proc ---


def nats_pid() -> int | None:
    """The process listening on the NATS URL's port, when it runs here (`ss -ltnp`)."""
    port = NATS_URL.rsplit(":", 1)[-1].strip("/")
    try:
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"pid=(\d+)", out)
    return int(found.group(1)) if found else None


class CpuMeter:
    """CPU seconds spent since `start()` by the ledger, its Postgres backends and NATS."""

    def __init__(self, pg: asyncpg.Connection, ledger_pid: int) -> None:
        self.pg = pg
        self.ledger_pid = ledger_pid
        self.nats_pid = nats_pid()
        self.backends: dict[int, float] = {}
        self.base: dict[str, float] = {}

    async def _scan_backends(self) -> None:
        """Note every backend of the ledger (it may open more while it runs)."""
        for row in await self.pg.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1", APP_NAME):
            self.backends.setdefault(row[0], cpu_seconds(row[0]))

    async def start(self) -> None:
        await self._scan_backends()
        self.base = {"ledger": cpu_seconds(self.ledger_pid),
                     "nats": cpu_seconds(self.nats_pid) if self.nats_pid else 0.0}

    async def poll(self) -> None:
        await self._scan_backends()

    async def spent(self) -> dict[str, float]:
        await self._scan_backends()
        return {"ledger": cpu_seconds(self.ledger_pid) - self.base["ledger"],
                "postgres": sum(cpu_seconds(p) - c for p, c in self.backends.items()),
                "nats": (cpu_seconds(self.nats_pid) - self.base["nats"]
                         if self.nats_pid else float("nan"))}


def per_event_us(spent: dict[str, float], events: int) -> dict[str, float]:
    return {k: v / events * 1e6 for k, v in spent.items()}


# --- publishing from worker processes ---


def _publish_worker(count: int, org: str, seed: int, queue: multiprocessing.Queue) -> None:
    async def go() -> tuple[float, float, float]:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
        pub = Publisher(NATS_URL, SPEC, f"/tmp/tokenrt-bench-{TAG}-outbox-{seed}.sqlite3")
        await pub.start()
        assert await pub.wait_ready(within=10)
        events = [make_event(org_id=org, project_id="bench", user_id=f"u{i % 50}",
                             session_id=f"s{i % 500}", model_index=i % 3,
                             input_tokens=1000 + i % 997, output_tokens=100 + i % 89,
                             cost_nusd=10_000 + i % 7919) for i in range(count)]
        began, cpu0 = time.time(), time.process_time()
        for i in range(0, count, 1000):
            await pub.publish_many(events[i:i + 1000])
        ended, cpu = time.time(), time.process_time() - cpu0
        assert await pub.flush(within=60)
        await pub.close()
        return began, ended, cpu

    queue.put(asyncio.run(go()))


def publish_in_processes(total: int, workers: int,
                         org: str) -> list[tuple[float, float, float]]:
    """(start, end, CPU seconds) of each worker's publishing."""
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_publish_worker, args=(total // workers, org, i, queue))
             for i in range(workers)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    return results


async def committed(pg: asyncpg.Connection, org: str) -> int:
    return int(await pg.fetchval(
        f'SELECT coalesce(sum(requests), 0) FROM "{SCHEMA}".rollup_day WHERE org_id = $1', org))


async def wait_committed(pg: asyncpg.Connection, org: str, want: int,
                         limit: float = 300, meter: CpuMeter | None = None) -> float:
    """Wall time at which the rollups first hold `want` events of `org`."""
    deadline = time.time() + limit
    while time.time() < deadline:
        if await committed(pg, org) >= want:
            return time.time()
        if meter is not None:
            await meter.poll()
        await asyncio.sleep(0.02)
    raise RuntimeError(f"only {await committed(pg, org)} of {want} events committed")


async def bench_ingest(pg: asyncpg.Connection, n: int, workers: int) -> dict[str, float]:
    proc, address = start_ledger()
    await wait_ready(address)
    meter = CpuMeter(pg, proc.pid)
    await meter.start()
    load0 = os.getloadavg()[0]
    publishing = asyncio.create_task(
        asyncio.to_thread(publish_in_processes, n, workers, "ingest"))
    done = await wait_committed(pg, "ingest", n, meter=meter)
    times = await publishing
    spent = await meter.spent()
    began = min(t[0] for t in times)
    out: dict[str, float] = {
        "publish_rate": n / (max(t[1] for t in times) - began),
        "sustained": n / (done - began), "sustained_load": (load0 + os.getloadavg()[0]) / 2}
    out.update({f"sustained_{k}_us": v for k, v in per_event_us(spent, n).items()})
    out["sustained_publishers_us"] = sum(t[2] for t in times) / n * 1e6

    stop(proc)  # now a backlog the ledger did not see arrive
    await asyncio.to_thread(publish_in_processes, n, workers, "backlog")
    proc, address = start_ledger()
    await wait_ready(address)  # start-up (imports, migrations) is not part of the drain
    meter = CpuMeter(pg, proc.pid)
    await meter.start()
    t0, before, load0 = time.time(), await committed(pg, "backlog"), os.getloadavg()[0]
    done = await wait_committed(pg, "backlog", n, meter=meter)
    drained = n - before
    out["drain"] = drained / (done - t0)
    out["drain_load"] = (load0 + os.getloadavg()[0]) / 2
    out["drain_events"] = drained
    out.update({f"drain_{k}_us": v
                for k, v in per_event_us(await meter.spent(), drained).items()})
    stop(proc)
    return out


async def bench_lag(pg: asyncpg.Connection, rate: int, seconds: int) -> dict[str, float]:
    proc, address = start_ledger()
    await wait_ready(address)
    pub = Publisher(NATS_URL, SPEC, f"/tmp/tokenrt-bench-{TAG}-outbox-lag.sqlite3")
    await pub.start()
    assert await pub.wait_ready(within=10)
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    sent = 0
    began = time.monotonic()
    pending: set[asyncio.Task] = set()
    outboxed = 0

    def count_outboxed(task: asyncio.Task) -> None:
        nonlocal outboxed
        pending.discard(task)
        if not task.cancelled() and task.exception() is None:
            outboxed += sum(d is not Delivery.ACKED for d in task.result())
    while time.monotonic() - began < seconds:
        due = int((time.monotonic() - began) / tick) * per_tick
        batch = []
        while sent < due:
            batch.append(make_event(org_id="lag", project_id="bench", session_id=f"s{sent % 500}",
                                    occurred_at=datetime.now(UTC)))
            sent += 1
        if batch:
            task = asyncio.create_task(pub.publish_many(batch))
            pending.add(task)
            task.add_done_callback(count_outboxed)
        await asyncio.sleep(tick / 2)
    achieved = sent / (time.monotonic() - began)  # the rate offered while generating
    await asyncio.gather(*pending)
    # Events whose JetStream ack did not come in time went to the outbox: replay them (their
    # lag then includes the replay; their count is printed).
    assert await pub.flush(within=120)
    await pub.close()
    await wait_committed(pg, "lag", sent)
    row = await pg.fetchrow(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), "
        "percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag) FROM ("
        "SELECT extract(epoch FROM recorded_at - occurred_at) AS lag "
        f"FROM \"{SCHEMA}\".usage_events WHERE org_id = 'lag') x")
    stop(proc)
    return {"rate": achieved, "events": sent, "outboxed": outboxed,
            "p50_s": float(row[0]), "p99_s": float(row[1]),
            "max_s": float(row[2])}


async def fill_month(n: int) -> float:
    """Write n events of one project over 30 days with the ledger's own ingest code."""
    pool = await asyncpg.create_pool(PG_DSN, min_size=2, max_size=2)
    assert pool is not None
    store = LedgerStore(pool, SCHEMA, structlog.get_logger())
    await store.migrate()
    month = datetime(2026, 10, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    began = time.time()
    step = 10_000
    template = make_event(org_id="month", project_id="big")
    for start in range(0, n, step):
        rows = []
        for i in range(start, min(n, start + step)):
            e = template
            e.event_id = f"m-{TAG}-{i}"
            e.user_id = f"u{i % 50}"
            e.session_id = f"s{i % 2000}"
            e.served_model = ("gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash")[i % 3]
            e.usage.input_tokens = 500 + i % 5000
            e.usage.output_tokens = 50 + i % 800
            e.cost_nusd = 1_000 + i % 100_000
            e.occurred_at.FromDatetime(month + timedelta(seconds=(i * 2_592_000) // n))
            rows.append(decode(e.SerializeToString(), now))
        await store.ingest(rows)
    elapsed = time.time() - began
    await pool.close()
    return elapsed


async def bench_month(n: int, runs: int) -> dict[str, float]:
    fill_s = await fill_month(n)
    proc, address = start_ledger()
    await wait_ready(address)
    out: dict[str, float] = {"events": n, "fill_s": fill_s}
    month = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    unaligned = (datetime(2026, 10, 1, 7, 13, tzinfo=UTC),
                 datetime(2026, 10, 31, 16, 47, tzinfo=UTC))
    cases = {
        "month_by_model": (month, [ledger_pb2.USAGE_DIMENSION_MODEL], 0),
        "month_daily_series": (month, [], ledger_pb2.TIME_GRANULARITY_DAY),
        "month_top_users": (month, [ledger_pb2.USAGE_DIMENSION_USER], 0),
        "unaligned_30d_by_model": (unaligned, [ledger_pb2.USAGE_DIMENSION_MODEL], 0),
    }
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        for name, ((lo, hi), dims, grain) in cases.items():
            req = ledger_pb2.QueryUsageRequest(group_by=dims, granularity=grain,
                                               order_by=ledger_pb2.USAGE_ORDER_COST_DESC)
            req.filter.org_id, req.filter.project_id = "month", "big"
            req.filter.start_time.FromDatetime(lo)
            req.filter.end_time.FromDatetime(hi)
            samples = []
            for _ in range(runs):
                t0 = time.perf_counter()
                reply = await stub.QueryUsage(req, timeout=30)
                samples.append((time.perf_counter() - t0) * 1000)
            if name == "month_by_model":
                assert reply.total.requests == n, reply.total.requests
            samples.sort()
            out[f"{name}_p50_ms"] = statistics.median(samples)
            out[f"{name}_p99_ms"] = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    stop(proc)
    return out


async def cleanup() -> None:
    for proc in STARTED:
        stop(proc)
    conn = await asyncpg.connect(PG_DSN)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    await conn.close()
    nc = await nats.connect(NATS_URL)
    for name in (SPEC.name, SPEC.dlq_stream):
        try:
            await nc.jetstream().delete_stream(name)
        except Exception:
            pass
    await nc.close()
    for f in Path("/tmp").glob(f"tokenrt-bench-{TAG}-outbox-*"):  # noqa: ASYNC240
        f.unlink()


def print_cpu(prefix: str, r: dict[str, float], *, with_publishers: bool) -> None:
    """CPU per event by part, and the rates that CPU allows on this machine's cores."""
    parts = ["ledger", "postgres", "nats"] + (["publishers"] if with_publishers else [])
    us = {p: r[f"{prefix}_{p}_us"] for p in parts}
    known = [v for v in us.values() if v == v]  # NaN: NATS runs elsewhere
    text = ", ".join(f"{p} {v:.1f}" for p, v in us.items())
    cores = os.cpu_count() or 1
    print(f"    CPU per event (us): {text}; total {sum(known):.1f}")
    print(f"    CPU allows: {1e6 / us['ledger']:,.0f} events/s for the ledger process "
          f"(one core), {cores * 1e6 / sum(known):,.0f} events/s for all of it on "
          f"{cores} free cores")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2, help="publisher processes")
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--month-events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--skip", default="", help="comma-separated: ingest, lag, month")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    from tokenrt_ledger.migrate import ident  # noqa: F401  (fail early on a broken install)

    conn = await asyncpg.connect(PG_DSN)
    try:
        if "ingest" not in skip:
            r = await bench_ingest(conn, args.events, args.workers)
            print(f"ingest: {args.events} events, {args.workers} publisher processes, "
                  f"batch {SETTINGS.ledger_batch_size}, {SETTINGS.ledger_writers} writers")
            print(f"  publish rate (acked)            {r['publish_rate']:>10,.0f} events/s")
            print(f"  publish -> committed rollups    {r['sustained']:>10,.0f} events/s  "
                  f"(target >= 20,000; load {r['sustained_load']:.1f})")
            print_cpu("sustained", r, with_publishers=True)
            print(f"  backlog drain, ledger alone     {r['drain']:>10,.0f} events/s  "
                  f"({r['drain_events']:,.0f} events after it was ready; "
                  f"load {r['drain_load']:.1f})")
            print_cpu("drain", r, with_publishers=False)
        if "lag" not in skip:
            r = await bench_lag(conn, args.rate, args.seconds)
            print(f"lag: {r['events']:,} events at {r['rate']:,.0f} events/s "
                  f"({r['outboxed']:,} through the publisher's outbox)")
            print(f"  publish -> stored  p50 {r['p50_s'] * 1000:,.0f} ms  p99 "
                  f"{r['p99_s'] * 1000:,.0f} ms  max {r['max_s'] * 1000:,.0f} ms  "
                  "(target p99 < 2 s)")
        if "month" not in skip:
            r = await bench_month(args.month_events, args.runs)
            print(f"month: {int(r['events']):,} events of one project in October 2026 "
                  f"(written in {r['fill_s']:.0f} s)")
            for name in ("month_by_model", "month_daily_series", "month_top_users",
                         "unaligned_30d_by_model"):
                print(f"  QueryUsage {name:<24} p50 {r[name + '_p50_ms']:6.1f} ms  "
                      f"p99 {r[name + '_p99_ms']:6.1f} ms  (target < 200 ms)")
    finally:
        await conn.close()
        await cleanup()


if __name__ == "__main__":
    asyncio.run(main())
