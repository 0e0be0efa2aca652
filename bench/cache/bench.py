"""Cache benchmarks: Lookup of a ~2k-token request over gRPC, and the semantic labelled set.

Starts its own cache process on real Redis (TOKENRT_REDIS_URL or the local default, under
a key prefix of its own that it removes afterwards), stores one answer, then measures:
  1. p50 / p99 latency of Lookup hits, one call at a time            target p50 < 1 ms
  2. Lookups per second with many calls in flight (1 and 2 client processes)
                                                                    target >= 5,000 /s
  3. the in-process part: the request's digest and key, cold and from the memo (CPU µs)
  4. precision / recall of the semantic matcher on the labelled IDE prompt set
Run: `make bench-cache` (or `.venv/bin/python bench/cache/bench.py [--json]`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import redis
import structlog
import tiktoken
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenrt.v1 import cache_pb2, cache_pb2_grpc
from tokenrt.v1 import common_pb2 as c
from tokenrt_cache import core, semantic
from tokenrt_cache.embeddings import embedded_scores, pack_vector
from tokenrt_cache.minilm import MiniLM
from tokenrt_cache.service import CacheService
from tokenrt_cache.store import CacheStore
from tokenrt_common.connect import Infra
from tokenrt_common.settings import load_settings
from tokenrt_testkit.cpu import cpu_seconds
from tokenrt_testkit.stack import stack_env

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
PAIRS = ROOT / "services" / "cache" / "tests" / "data" / "semantic_pairs.jsonl"
TENANT = c.Tenant(org_id="bench", project_id="cache")


def two_k_request() -> tuple[cache_pb2.CacheableRequest, int]:
    """A chat of about 2,000 o200k tokens: a system prompt, a source file and a question."""
    source = (ROOT / "services" / "cache" / "src" / "tokenrt_cache" / "service.py").read_text()
    enc = tiktoken.get_encoding("o200k_base")
    ids = enc.encode(source)[:1900]
    req = cache_pb2.CacheableRequest(model="gpt-4o-mini")
    req.messages.add(role=c.ROLE_SYSTEM).content.add(text="You are a careful coding assistant.")
    req.messages.add(role=c.ROLE_USER).content.add(
        text="Review this file and list its bugs:\n```python\n" + enc.decode(ids) + "\n```")
    req.sampling.temperature = 0.0
    req.sampling.max_output_tokens = 1024
    tokens = sum(len(enc.encode(p.text)) for m in req.messages for p in m.content)
    return req, tokens


def start_cache(tmp: Path, prefix: str,
                server_src: str = "") -> tuple[subprocess.Popen[bytes], str]:
    env = stack_env(tmp, TOKENRT_LOG_LEVEL="warning", TOKENRT_CACHE_REDIS_PREFIX=prefix)
    if server_src:  # another version's tokenrt_cache first on the path
        env["PYTHONPATH"] = server_src
    address = load_settings(env).endpoint("cache").address
    log = (tmp / "cache.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tokenrt_cache"], env=env, stdout=log,
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
    raise SystemExit(f"cache did not become SERVING; see {tmp / 'cache.log'}")


def lookup_request(req: cache_pb2.CacheableRequest) -> cache_pb2.LookupRequest:
    return cache_pb2.LookupRequest(tenant=TENANT, request=req)


async def latency(address: str, req: cache_pb2.CacheableRequest, n: int,
                  server_pid: int) -> dict[str, object]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        message = lookup_request(req)
        for _ in range(200):  # warm up
            await stub.Lookup(message, timeout=5)
        times = []
        misses: dict[str, int] = {}
        cpu0 = cpu_seconds(server_pid)
        for _ in range(n):
            t0 = time.perf_counter()
            answer = await stub.Lookup(message, timeout=5)
            times.append((time.perf_counter() - t0) * 1000)
            if not answer.hit:
                reason = cache_pb2.CacheMissReason.Name(answer.miss_reason)
                misses[reason] = misses.get(reason, 0) + 1
        cpu = cpu_seconds(server_pid) - cpu0
    times.sort()
    return {"p50_ms": round(statistics.median(times), 3),
            "p90_ms": round(times[int(0.9 * n)], 3), "p99_ms": round(times[int(0.99 * n)], 3),
            "server_cpu_us_per_lookup": round(cpu / n * 1e6, 1), "misses": misses}


async def _flood(address: str, payload: bytes, seconds: float,
                 concurrency: int) -> tuple[int, int]:
    message = cache_pb2.LookupRequest.FromString(payload)
    done = hits = 0
    stop = time.perf_counter() + seconds
    async with grpc.aio.insecure_channel(address) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        await stub.Lookup(message, timeout=5)

        async def worker() -> None:
            nonlocal done, hits
            while time.perf_counter() < stop:
                answer = await stub.Lookup(message, timeout=5)
                hits += answer.hit
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, hits


def _flood_process(address: str, payload: bytes, seconds: float, concurrency: int,
                   out: multiprocessing.Queue[tuple[int, int]]) -> None:
    out.put(asyncio.run(_flood(address, payload, seconds, concurrency)))


def throughput(address: str, req: cache_pb2.CacheableRequest, clients: int,
               concurrency: int, seconds: float, server_pid: int) -> dict[str, float]:
    """Lookups answered per second, the share that were hits (a lookup that waits past
    the lookup timeout behind others answers a miss, UNAVAILABLE), and the cache process's
    CPU per lookup (less sensitive to the machine's load than wall time)."""
    payload = lookup_request(req).SerializeToString()
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[tuple[int, int]] = ctx.Queue()
    procs = [ctx.Process(target=_flood_process, args=(address, payload, seconds, concurrency, out))
             for _ in range(clients)]
    cpu0 = cpu_seconds(server_pid)
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    cpu = cpu_seconds(server_pid) - cpu0
    for p in procs:
        p.join()
    total, hits = sum(r[0] for r in results), sum(r[1] for r in results)
    return {"per_s": round(total / seconds), "hit_share": round(hits / max(total, 1), 4),
            "server_cpu_us_per_lookup": round(cpu / max(total, 1) * 1e6, 1)}


async def _health_flood(address: str, seconds: float, concurrency: int,
                        server_pid: int) -> dict[str, float]:
    """The framework's floor on the same machine at the same moment: an empty health check
    through the same server (latency one at a time, then calls/s with many in flight)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        message = health_pb2.HealthCheckRequest()
        times = []
        cpu0 = cpu_seconds(server_pid)
        for _ in range(1000):
            t0 = time.perf_counter()
            await stub.Check(message, timeout=5)
            times.append((time.perf_counter() - t0) * 1000)
        one_at_a_time_cpu = cpu_seconds(server_pid) - cpu0
        done = 0
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await stub.Check(message, timeout=5)
                done += 1

        cpu0 = cpu_seconds(server_pid)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu = cpu_seconds(server_pid) - cpu0
    return {"p50_ms": round(statistics.median(times), 3),
            "server_cpu_us_per_call_one_at_a_time": round(one_at_a_time_cpu / 1000 * 1e6, 1),
            "per_s": round(done / seconds),
            "server_cpu_us_per_call": round(cpu / max(done, 1) * 1e6, 1)}


def in_process(req: cache_pb2.CacheableRequest, n: int = 2000) -> dict[str, float]:
    """CPU (process time, so less sensitive to the machine's load) of the in-process parts:
    the request's digest and key cold (canonical form) and warm (memo by its bytes)."""
    ns = core.namespace(core.Tenant("bench", "cache"), False)

    def cpu_us(work: Callable[[], object]) -> float:
        work()
        t0 = time.process_time()
        for _ in range(n):
            work()
        return round((time.process_time() - t0) / n * 1e6, 1)

    memo = core.DigestMemo()
    wire = lookup_request(req).SerializeToString()
    return {"digest_and_key_cold_cpu_us": cpu_us(lambda: core.key_of(
                ns, core.request_digest(req))),
            "digest_and_key_memo_cpu_us": cpu_us(lambda: core.key_of(ns, memo.digest(req))),
            "parse_request_cpu_us": cpu_us(lambda: cache_pb2.LookupRequest.FromString(wire)),
            "request_bytes": len(wire)}


def service_cpu(settings_env: dict[str, str], prefix: str, req: cache_pb2.CacheableRequest,
                answer: cache_pb2.CachedResponse, n: int = 2000,
                concurrency: int = 16) -> dict[str, float]:
    """CPU of the cache's own lookup path, without gRPC: CacheService.lookup in this
    process on real Redis, `concurrency` at a time (process CPU time per lookup)."""

    async def run() -> dict[str, float]:
        settings = load_settings(settings_env)
        log = structlog.get_logger()
        infra = Infra(settings, frozenset({"redis"}), log)
        infra.start()
        service = CacheService(settings, CacheStore(infra, prefix + ":inproc"), log, None)
        stored = await service.store(cache_pb2.StoreRequest(tenant=TENANT, request=req,
                                                            response=answer))
        assert stored.stored, stored
        wire = lookup_request(req).SerializeToString()
        hits = 0

        async def worker(count: int) -> None:
            nonlocal hits
            for _ in range(count):
                got = await service.lookup(cache_pb2.LookupRequest.FromString(wire))
                hits += got.hit  # after the await: += would read `hits` before it

        await worker(200)  # warm up
        hits = 0
        t0 = time.process_time()
        await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
        cpu = time.process_time() - t0
        await service.close()
        await infra.close()
        done = n // concurrency * concurrency
        return {"cpu_us_per_lookup": round(cpu / done * 1e6, 1), "concurrency": concurrency,
                "hit_share": round(hits / done, 4)}

    return asyncio.run(run())


def _guard_without_words(text: str) -> tuple[object, ...]:
    g = semantic.guard_of(text)
    return (g.code, g.identifiers, g.numbers, g.paths, g.languages, g.negations, g.operators)


def labelled_set(backend: str, threshold: float, content_words: bool = True) -> dict[str, object]:
    """Precision, recall and false-hit rate of one backend on the labelled IDE prompts, with
    the guard the service applies (content_words=False: the guard without its content-word
    set, to show what that part of the guard holds back)."""
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    model = MiniLM() if backend == "local" else None
    tp = fp = fn = tn = 0
    by_kind: dict[str, list[int]] = {}
    for r in rows:
        a, b = r["a"], r["b"]
        if content_words:
            same_guard = (semantic.guard_of(a).fingerprint() ==
                          semantic.guard_of(b).fingerprint())
        else:
            same_guard = _guard_without_words(a) == _guard_without_words(b)
        sa, sb = semantic.sketch(a), semantic.sketch(b)
        hit = False
        if same_guard and model is None:
            hit = semantic.similarity(sa, sb) >= threshold
        elif same_guard and model is not None:
            va, vb = (model.embed(semantic.split_code(t)[1]) for t in (a, b))
            ga = semantic.guard_of(a).fingerprint()
            score = embedded_scores(va, sa, ga, [semantic.pack(sb, ga, pack_vector(vb))])[0]
            hit = score.guarded and score.similarity >= threshold
        kind = by_kind.setdefault(f"{'dup' if r['same'] else 'trap'}:{r['kind']}", [0, 0])
        kind[0] += int(hit == r["same"])
        kind[1] += 1
        if r["same"]:
            tp, fn = tp + hit, fn + (not hit)
        else:
            fp, tn = fp + hit, tn + (not hit)
    return {
        "backend": backend, "threshold": threshold, "content_word_guard": content_words,
        "pairs": len(rows), "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0, "found": f"{tp}/{tp + fn}",
        "false_hit_rate": round(fp / (fp + tn), 4) if fp + tn else 0.0,
        "false_hits": f"{fp}/{fp + tn}",
        "correct_by_kind": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_kind.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each flood")
    parser.add_argument("--calls", type=int, default=3000, help="sequential calls for latency")
    parser.add_argument("--server-src", default="",
                        help="run the cache process from this source folder (the one holding "
                             "tokenrt_cache/), to compare versions, e.g. one made with "
                             "`git archive <commit> services/cache/src | tar -x -C DIR`")
    parser.add_argument("--no-semantic", action="store_true",
                        help="skip the labelled set (it embeds ~200 prompts)")
    args = parser.parse_args()

    req, tokens = two_k_request()
    prefix = f"bench:cache:{uuid.uuid4().hex[:8]}"
    settings_env = stack_env(Path(tempfile.gettempdir()),
                             TOKENRT_CACHE_LOOKUP_TIMEOUT_MS="1000")
    settings = load_settings(settings_env)
    with tempfile.TemporaryDirectory() as tmp:
        proc, address = start_cache(Path(tmp), prefix, args.server_src)
        try:
            with grpc.insecure_channel(address) as channel:
                stub = cache_pb2_grpc.CacheServiceStub(channel)
                answer = cache_pb2.CachedResponse(
                    message=c.Message(role=c.ROLE_ASSISTANT,
                                      content=[c.ContentPart(text="No bugs found. " * 40)]),
                    finish_reason=c.FINISH_REASON_STOP,
                    usage=c.Usage(input_tokens=tokens, output_tokens=200), cost_nusd=420_000)
                stored = stub.Store(cache_pb2.StoreRequest(tenant=TENANT, request=req,
                                                           response=answer), timeout=5)
                assert stored.stored, stored
            load_before = os.getloadavg()

            def flood(clients: int, in_flight: int) -> dict[str, float]:
                return throughput(address, req, clients, in_flight, args.seconds, proc.pid)

            figures: dict[str, object] = {
                "request_tokens_o200k": tokens,
                "in_process": in_process(req),
                "service_lookup_without_grpc": service_cpu(settings_env, prefix, req, answer),
                "service_lookup_without_grpc_one_at_a_time": service_cpu(
                    settings_env, prefix, req, answer, concurrency=1),
                "health_check_baseline": asyncio.run(
                    _health_flood(address, args.seconds, 64, proc.pid)),
                "lookup_latency_concurrency_1": asyncio.run(latency(address, req, args.calls,
                                                                    proc.pid)),
                "lookups_1_client_8_in_flight": flood(1, 8),
                "lookups_1_client_64_in_flight": flood(1, 64),
                "lookups_2_clients_32_in_flight": flood(2, 32),
                "semantic_labelled_set": [] if args.no_semantic else [
                    labelled_set("lexical", settings.cache_similarity_threshold),
                    labelled_set("local", settings.cache_embedding_threshold),
                    labelled_set("local", settings.cache_embedding_threshold, False),
                ],
                "cpu_count": os.cpu_count(),
            }
            figures["load_average_before_after"] = [load_before, os.getloadavg()]
        finally:
            proc.terminate()
            proc.wait(15)
            client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
            keys = list(client.scan_iter(f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    lat = figures["lookup_latency_concurrency_1"]
    assert isinstance(lat, dict)
    print(f"request: {tokens} tokens (o200k), {figures['in_process']}")
    print(f"baseline, empty health check on the same server: "
          f"{figures['health_check_baseline']}")
    print(f"cache's own lookup path without gRPC: {figures['service_lookup_without_grpc']}, "
          f"one at a time: {figures['service_lookup_without_grpc_one_at_a_time']}")
    print(f"Lookup hit latency, one at a time: p50 {lat['p50_ms']} ms, p90 {lat['p90_ms']} ms, "
          f"p99 {lat['p99_ms']} ms, server CPU {lat['server_cpu_us_per_lookup']} µs per lookup "
          "  (target p50 < 1 ms)")
    for name in ("lookups_1_client_8_in_flight", "lookups_1_client_64_in_flight",
                 "lookups_2_clients_32_in_flight"):
        print(f"{name}: {figures[name]}   (target >= 5000 /s)")
    for row in figures["semantic_labelled_set"]:  # type: ignore[attr-defined]
        print(f"semantic labelled set: {json.dumps(row)}")
    print(f"cpus: {figures['cpu_count']}, load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
