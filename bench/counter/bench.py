"""Counter benchmarks: gRPC counting next to in-process tiktoken, in the same run.

Starts its own counter process (real Redis from TOKENRT_REDIS_URL or the local default),
then measures:
  1. cold 1 MB texts over gRPC vs in-process tiktoken (MB/s, tokens/s)   target >= 70 %
     (rounds alternate the two sides; medians, so load from other processes hits both)
  2. a repeated-IDE-context workload (the same files in every request)     target >= 10x
     in three modes: full content; by reference through tokenrt_counter.client.ByReference
     (the files go as 16-byte digests, the question in full); by reference with digests
     the client already holds (an IDE that hashes a file when it changes)
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
from tokenrt_counter.client import ByReference, message_digest
from tokenrt_testkit.cpu import thread_cpu_seconds as process_cpu_seconds
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
    """The same 12 files and a new question in every request, as a stream of requests.
    In-process tiktoken re-tokenises the whole context each time (the same texts, as plain
    strings: no protobuf is built on that side). The gRPC sides build their request each
    time, as a client must:
      full  - every message with its content;
      ref   - the full request given to ByReference, which serialises and hashes each large
              message and sends those it sent before as digests (what the router would do);
      known - the client already holds the files' digests (an IDE hashing a file when it
              changes): empty messages with digests, and the question in full.
    Blocks of 10 requests rotate the sides (so load from other processes hits all alike);
    wall figures are medians of the blocks' mean request times, CPU figures are totals over
    all requests (client: this process; counter: its /proc CPU time)."""
    rng = random.Random(2)
    lines = corpus.splitlines()
    files = ["\n".join(lines[i:i + 400]) for i in range(0, 400 * 12, 400)]
    context_bytes = sum(len(f.encode()) for f in files)
    enc = tiktoken.get_encoding("o200k_base")
    helper = ByReference(stub)
    file_digests = [message_digest(m) for m in ide_request(files, "")[1:-1]]
    system = ide_request([], "")[0]
    empty = c.Message()

    def local(q: str) -> int:
        return sum(len(enc.encode_ordinary(t)) for t in (SYSTEM_PROMPT, *files, q))

    async def full(q: str) -> int:
        return (await stub.CountMessages(pb.CountMessagesRequest(
            model="gpt-4o", messages=ide_request(files, q)), timeout=30)).input_tokens

    async def ref(q: str) -> int:
        return (await helper.count_messages(pb.CountMessagesRequest(
            model="gpt-4o", messages=ide_request(files, q)), rpc_timeout=30)).input_tokens

    async def known(q: str) -> int:
        question = c.Message(role=c.ROLE_USER, content=[c.ContentPart(text=q)])
        reply = await stub.CountMessages(pb.CountMessagesRequest(
            model="gpt-4o", messages=[system, *[empty] * len(files), question],
            message_digests=[b"", *file_digests, b""]), timeout=30)
        assert not reply.unknown_messages, "the counter forgot the files"
        return reply.input_tokens

    # Warm up: every side counts the files once (the by-reference sides then know them).
    want = await full("warm")
    assert await ref("warm") == await known("warm") == want
    sent = helper.by_reference(pb.CountMessagesRequest(model="gpt-4o",
                                                       messages=ide_request(files, "warm")))
    block = 10
    wall: dict[str, list[float]] = {k: [] for k in ("local", "full", "ref", "known")}
    cpu = {k: 0.0 for k in wall}
    server = {k: 0.0 for k in wall}
    for _ in range(max(1, rounds // block)):
        questions = [f"Question: why does line {rng.randrange(400)} fail?" for _ in range(block)]
        t0, c0 = time.perf_counter(), time.process_time()
        counts = [local(q) for q in questions]
        wall["local"].append((time.perf_counter() - t0) / block)
        cpu["local"] += time.process_time() - c0
        for side, fn in (("full", full), ("ref", ref), ("known", known)):
            t0, c0 = time.perf_counter(), time.process_time()
            s0 = process_cpu_seconds(server_pid)
            got = [await fn(q) for q in questions]
            wall[side].append((time.perf_counter() - t0) / block)
            cpu[side] += time.process_time() - c0
            server[side] += process_cpu_seconds(server_pid) - s0
            # chat framing: 3 per message + the role + the reply priming, over the texts
            assert got == [n + 3 * 14 + 14 + 3 for n in counts], (side, got[:1], counts[:1])
    n = max(1, rounds // block) * block
    out = {"context_kb": context_bytes / 1024, "resent": float(helper.resent),
           "ref_request_bytes": float(sent.ByteSize()),
           "full_request_bytes": float(pb.CountMessagesRequest(
               model="gpt-4o", messages=ide_request(files, "warm")).ByteSize())}
    local_wall = statistics.median(wall["local"])
    out["local_ms"] = local_wall * 1000
    out["local_cpu_ms"] = cpu["local"] / n * 1000
    for side in ("full", "ref", "known"):
        med = statistics.median(wall[side])
        out[f"{side}_ms"] = med * 1000
        out[f"{side}_speedup"] = local_wall / med
        out[f"{side}_client_cpu_ms"] = cpu[side] / n * 1000
        out[f"{side}_server_cpu_ms"] = server[side] / n * 1000
        out[f"{side}_cpu_speedup"] = cpu["local"] / (cpu[side] + server[side])
    return out


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
            results["ide_repeated"] = await bench_ide(stub, corpus, 10 if quick else 200,
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
        print(f"repeated IDE context : {ide['context_kb']:.0f} KB of files per request "
              f"(full request {ide['full_request_bytes'] / 1024:.0f} KB, by reference "
              f"{ide['ref_request_bytes']:.0f} bytes); in-process tiktoken "
              f"{ide['local_ms']:.2f} ms wall, {ide['local_cpu_ms']:.2f} ms CPU (target >= 10x)")
        for side, label in (("full", "full content"), ("ref", "by reference (ByReference)"),
                            ("known", "by reference (digests known)")):
            print(f"  {label:29}: {ide[side + '_ms']:.2f} ms wall = "
                  f"{ide[side + '_speedup']:.1f}x; CPU counter "
                  f"{ide[side + '_server_cpu_ms']:.2f} ms + client "
                  f"{ide[side + '_client_cpu_ms']:.2f} ms = {ide[side + '_cpu_speedup']:.1f}x")
        print(f"  (CPU figures are not disturbed by other processes' load; items resent "
              f"by ByReference: {ide['resent']:.0f})")
    if "count_messages_2k" in results:
        lat = results["count_messages_2k"]
        print(f"CountMessages {lat['chat_tokens']:.0f}-token chat: p50 {lat['p50_ms']:.2f} ms, "
              f"p99 {lat['p99_ms']:.2f} ms (target p50 < 2 ms); never-seen chat p50 "
              f"{lat['cold_p50_ms']:.2f} ms")
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")

if __name__ == "__main__":
    main()
