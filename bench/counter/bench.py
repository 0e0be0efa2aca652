"""Counter benchmarks: gRPC counting next to in-process tiktoken, in the same run.

Starts its own counter process (real Redis from TOKENRT_REDIS_URL or the local default),
then measures:
  1. cold 1 MB texts over gRPC vs in-process tiktoken (MB/s, tokens/s)   target >= 70 %
     (rounds alternate the two sides; medians, so load from other processes hits both)
  2. a repeated-IDE-context workload (the same files in every request)     target >= 10x
  3. p50 latency of CountMessages for a ~2k-token chat                      target < 2 ms
Run: `make bench-counter` (or `.venv/bin/python bench/counter/bench.py [--json]`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import tiktoken
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenrt.v1 import common_pb2 as c
from tokenrt.v1 import counter_pb2 as pb
from tokenrt.v1 import counter_pb2_grpc
from tokenrt_common.settings import load_settings
from tokenrt_testkit.stack import stack_env

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
MB = 1024 * 1024
OPTIONS = [("grpc.max_send_message_length", 64 * MB), ("grpc.max_receive_message_length", 64 * MB)]


def source_corpus() -> str:
    files = sorted(p for p in ROOT.rglob("*.py") if ".venv" not in p.parts)
    return "\n".join(p.read_text(errors="replace") for p in files)


def cold_text(corpus: str, rng: random.Random, size: int = MB) -> str:
    """1 MB of real code, every line made unique so no chunk was ever seen before."""
    lines = corpus.splitlines()
    out: list[str] = []
    total = 0
    while total < size:
        line = f"{rng.getrandbits(48):x} {rng.choice(lines)}"
        out.append(line)
        total += len(line) + 1
    return "\n".join(out)[:size]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), immune to other processes' load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_counter(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = stack_env(tmp, TOKENRT_LOG_LEVEL="warning")
    address = load_settings(env).endpoint("counter").address
    log = (tmp / "counter.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tokenrt_counter"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return proc, address
            except grpc.RpcError:
                time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"counter did not become SERVING; see {tmp / 'counter.log'}")


async def bench_cold(stub: counter_pb2_grpc.CounterServiceStub, corpus: str,
                     rounds: int) -> dict[str, float]:
    """Rounds alternate in-process and gRPC on fresh texts, so that load from other
    processes on the machine hits both sides alike; figures are medians over rounds."""
    rng = random.Random(1)
    enc = tiktoken.get_encoding("o200k_base")
    await stub.CountText(pb.CountTextRequest(model="gpt-4o", text="warm up"), timeout=30)
    local_rates, remote_rates, ratios, tokens_per_mb = [], [], [], []
    for _ in range(rounds):
        local_text, remote_text = cold_text(corpus, rng), cold_text(corpus, rng)
        t0 = time.perf_counter()
        n = len(enc.encode_ordinary(local_text))
        local = 1 / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        await stub.CountText(pb.CountTextRequest(model="gpt-4o", text=remote_text), timeout=60)
        remote = 1 / (time.perf_counter() - t0)
        local_rates.append(local)
        remote_rates.append(remote)
        ratios.append(remote / local)
        tokens_per_mb.append(n)
    tpm = statistics.median(tokens_per_mb)
    local_mb, remote_mb = statistics.median(local_rates), statistics.median(remote_rates)
    return {"local_mb_s": local_mb, "local_tokens_s": local_mb * tpm,
            "grpc_mb_s": remote_mb, "grpc_tokens_s": remote_mb * tpm,
            "ratio": statistics.median(ratios)}


SYSTEM_PROMPT = "You are a coding assistant."


def ide_request(files: list[str], question: str) -> list[c.Message]:
    messages = [c.Message(role=c.ROLE_SYSTEM, content=[c.ContentPart(text=SYSTEM_PROMPT)])]
    for f in files:
        messages.append(c.Message(role=c.ROLE_USER, content=[c.ContentPart(text=f)]))
    messages.append(c.Message(role=c.ROLE_USER, content=[c.ContentPart(text=question)]))
    return messages


async def bench_ide(stub: counter_pb2_grpc.CounterServiceStub, corpus: str,
                    rounds: int, server_pid: int) -> dict[str, float]:
    """The same 12 files and a new question in every request, as a stream of requests;
    in-process tiktoken re-tokenises the whole context each time (the same texts, as plain
    strings: no protobuf is built on that side; the gRPC side builds its request each time,
    as a client must). Blocks of 10 requests
    alternate the two sides (so load from other processes hits both alike); the figures
    are medians of the blocks' mean request times."""
    rng = random.Random(2)
    lines = corpus.splitlines()
    files = ["\n".join(lines[i:i + 400]) for i in range(0, 400 * 12, 400)]
    context_bytes = sum(len(f.encode()) for f in files)
    enc = tiktoken.get_encoding("o200k_base")
    await stub.CountMessages(pb.CountMessagesRequest(model="gpt-4o",
                                                     messages=ide_request(files, "warm")),
                             timeout=30)
    block = 10
    local_s, remote_s = [], []
    local_cpu = remote_cpu = server_cpu = 0.0
    for _ in range(max(1, rounds // block)):
        questions = [f"Question: why does line {rng.randrange(400)} fail?" for _ in range(block)]
        t0, c0 = time.perf_counter(), time.process_time()
        for q in questions:
            sum(len(enc.encode_ordinary(t)) for t in (SYSTEM_PROMPT, *files, q))
        local_s.append((time.perf_counter() - t0) / block)
        local_cpu += time.process_time() - c0
        t0, c0, s0 = time.perf_counter(), time.process_time(), process_cpu_seconds(server_pid)
        for q in questions:
            await stub.CountMessages(pb.CountMessagesRequest(
                model="gpt-4o", messages=ide_request(files, q)), timeout=30)
        remote_s.append((time.perf_counter() - t0) / block)
        remote_cpu += time.process_time() - c0
        server_cpu += process_cpu_seconds(server_pid) - s0
    n = max(1, rounds // block) * block
    local, remote = statistics.median(local_s), statistics.median(remote_s)
    return {"context_kb": context_bytes / 1024, "local_ms": local * 1000,
            "grpc_ms": remote * 1000, "speedup": local / remote,
            "local_cpu_ms": local_cpu / n * 1000, "client_cpu_ms": remote_cpu / n * 1000,
            "server_cpu_ms": server_cpu / n * 1000,
            "cpu_speedup": local_cpu / (remote_cpu + server_cpu)}


def chat_of(corpus: str, tokens: int, salt: str) -> list[c.Message]:
    enc = tiktoken.get_encoding("o200k_base")
    lines = corpus.splitlines()
    messages = [c.Message(role=c.ROLE_SYSTEM, content=[c.ContentPart(
        text="You are a helpful coding assistant.")])]
    total, i = 0, 0
    while total < tokens:
        text = "\n".join(lines[i * 20:(i + 1) * 20]) + salt
        role = c.ROLE_USER if i % 2 == 0 else c.ROLE_ASSISTANT
        messages.append(c.Message(role=role, content=[c.ContentPart(text=text)]))
        total += len(enc.encode_ordinary(text)) + 4
        i += 1
    return messages


async def bench_latency(stub: counter_pb2_grpc.CounterServiceStub, corpus: str,
                        rounds: int) -> dict[str, float]:
    chat = chat_of(corpus, 2000, "")
    request = pb.CountMessagesRequest(model="gpt-4o", messages=chat)
    size = (await stub.CountMessages(request, timeout=10)).input_tokens
    warm: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await stub.CountMessages(request, timeout=10)
        warm.append(time.perf_counter() - t0)
    # Cold: a chat never seen before each time (every text differs).
    cold: list[float] = []
    for i in range(min(rounds, 300)):
        fresh = pb.CountMessagesRequest(model="gpt-4o", messages=chat_of(corpus, 2000, f" #{i}"))
        t0 = time.perf_counter()
        await stub.CountMessages(fresh, timeout=10)
        cold.append(time.perf_counter() - t0)
    q = statistics.quantiles
    return {"chat_tokens": size, "p50_ms": statistics.median(warm) * 1000,
            "p99_ms": q(warm, n=100)[98] * 1000, "cold_p50_ms": statistics.median(cold) * 1000}


async def main_async(address: str, server_pid: int, quick: bool,
                     only: str | None = None) -> dict[str, dict[str, float]]:
    corpus = source_corpus()
    results: dict[str, dict[str, float]] = {}
    async with grpc.aio.insecure_channel(address, options=OPTIONS) as channel:
        stub = counter_pb2_grpc.CounterServiceStub(channel)
        if only in (None, "cold"):
            results["cold_1mb"] = await bench_cold(stub, corpus, 3 if quick else 15)
        if only in (None, "ide"):
            results["ide_repeated"] = await bench_ide(stub, corpus, 10 if quick else 50,
                                                      server_pid)
        if only in (None, "latency"):
            results["count_messages_2k"] = await bench_latency(stub, corpus,
                                                               200 if quick else 2000)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke test)")
    parser.add_argument("--only", choices=["cold", "ide", "latency"],
                        help="run one of the three benchmarks")
    args = parser.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="bench-counter-") as tmp:
        proc, address = start_counter(Path(tmp))
        try:
            results = asyncio.run(main_async(address, proc.pid, args.quick, args.only))
        finally:
            proc.terminate()
            proc.wait(20)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"load average before: {load_before}")
    if "cold_1mb" in results:
        cold = results["cold_1mb"]
        print(f"cold 1 MB CountText  : gRPC {cold['grpc_mb_s']:.2f} MB/s "
              f"({cold['grpc_tokens_s']:,.0f} tok/s) vs in-process tiktoken "
              f"{cold['local_mb_s']:.2f} MB/s ({cold['local_tokens_s']:,.0f} tok/s) = "
              f"{cold['ratio']:.0%} (target >= 70%)")
    if "ide_repeated" in results:
        ide = results["ide_repeated"]
        print(f"repeated IDE context : {ide['context_kb']:.0f} KB per request, gRPC "
              f"{ide['grpc_ms']:.2f} ms vs in-process tiktoken {ide['local_ms']:.2f} ms = "
              f"{ide['speedup']:.1f}x (target >= 10x)")
        print(f"  CPU per request    : counter {ide['server_cpu_ms']:.2f} ms + client "
              f"{ide['client_cpu_ms']:.2f} ms vs in-process tiktoken "
              f"{ide['local_cpu_ms']:.2f} ms = {ide['cpu_speedup']:.1f}x "
              "(not disturbed by other processes' load)")
    if "count_messages_2k" in results:
        lat = results["count_messages_2k"]
        print(f"CountMessages {lat['chat_tokens']:.0f}-token chat: p50 {lat['p50_ms']:.2f} ms, "
              f"p99 {lat['p99_ms']:.2f} ms (target p50 < 2 ms); never-seen chat p50 "
              f"{lat['cold_p50_ms']:.2f} ms")
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")

if __name__ == "__main__":
    main()
