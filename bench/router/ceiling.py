"""The ceiling of any router on this machine: a bare gRPC-to-HTTP proxy, no tokenrt code.

A server process answering RouterService.Complete by posting the messages to the
simulator (aiohttp, as the router does) and returning its text, with `--hops N` bare
calls to N other processes in parallel before the provider call: what the router's
count, cache lookup and budget reserve would cost if those services did no work at all.
The hops are health checks, one per request, or with `--batched` an echo of the
request's bytes, merged across concurrent requests the way the router's Batcher merges
its critical-path calls (items that arrive while a call is in flight go in the next
one); `--linger-ms` also waits that long for more items before a call once 8 or more
requests are waiting. The client and the simulator are the router bench's (bench.py),
measured the same way: added latency = p50 through the proxy - p50 directly to the
simulator.

Whatever the router does on top of this costs more: `--hops 0` bounds the router's
throughput from above; `--hops 2` (the cache lookup and the budget reserve, which must
answer before the provider is called) bounds its added latency at concurrency 1 from
below; `--hops 3 --batched` is the router's critical-path shape with services that cost
nothing (the off-path work - settlements, cache stores, usage events, the ledger - and
Redis are left out). Process CPU is read from /proc over the whole run, per request sent
through the proxy.

Run: `.venv/bin/python bench/router/ceiling.py [--hops 0] [--batched] [--linger-ms 0]
[--levels 1,64] [--seconds 5] [--json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import compare, start_sim  # noqa: E402
from tokenrt.v1 import common_pb2, router_pb2, router_pb2_grpc  # noqa: E402
from tokenrt_router.batching import Batcher  # noqa: E402
from tokenrt_testkit.cpu import cpu_seconds  # noqa: E402
from tokenrt_testkit.stack import free_ports  # noqa: E402

T = common_pb2
ROLES = {T.ROLE_SYSTEM: "system", T.ROLE_USER: "user", T.ROLE_ASSISTANT: "assistant"}
ECHO = "/ceiling.Hop/Echo"


def echo_batcher(address: str, linger_s: float) -> Batcher[bytes, None]:
    """The router's Batcher (batching.py) over the echo call: items that arrive while a
    call is in flight go in the next one, and with `--linger-ms` each call first waits for
    more once 8 or more requests are waiting (the router's rule, with its own threshold)."""
    call = grpc.aio.insecure_channel(address).unary_unary(ECHO)

    async def send(items: list[bytes]) -> list[None]:
        await call(b"".join(items))
        return [None] * len(items)
    return Batcher(send, 256, linger=lambda: linger_s if WAITING[0] >= 8 else 0.0)


WAITING = [0]  # requests of the proxy waiting for their hops


class Proxy(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, sim_url: str, hops: list[str], batched: bool, linger_s: float) -> None:
        self.url = sim_url
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        self.hops = [health_pb2_grpc.HealthStub(grpc.aio.insecure_channel(a)) for a in hops]
        self.batchers = [echo_batcher(a, linger_s) for a in hops] if batched else []

    async def Complete(self, request: router_pb2.CompleteRequest,  # noqa: N802
                       context: grpc.aio.ServicerContext) -> router_pb2.CompleteResponse:
        if self.batchers:
            item = request.SerializeToString()
            WAITING[0] += 1
            try:
                await asyncio.gather(*(b.call(item) for b in self.batchers))
            finally:
                WAITING[0] -= 1
        elif self.hops:
            check = health_pb2.HealthCheckRequest()
            await asyncio.gather(*(hop.Check(check) for hop in self.hops))
        body = {"model": "gpt-4o-mini", "max_tokens": request.sampling.max_output_tokens,
                "temperature": request.sampling.temperature,
                "messages": [{"role": ROLES[m.role], "content": m.content[0].text}
                             for m in request.messages]}
        async with self.session.post(self.url, json=body) as r:
            answer = await r.json()
        text = answer["choices"][0]["message"]["content"]
        return router_pb2.CompleteResponse(completion=router_pb2.Completion(
            message=T.Message(role=T.ROLE_ASSISTANT, content=[T.ContentPart(text=text)])))


async def serve_proxy(port: int, sim_url: str, batched: bool, linger_s: float,
                      hops: list[str]) -> None:
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServiceServicer_to_server(Proxy(sim_url, hops, batched, linger_s),
                                                        server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def serve_hop(port: int) -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("ceiling.Hop", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo)})])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def spawn(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hops", type=int, default=0)
    ap.add_argument("--batched", action="store_true")
    ap.add_argument("--linger-ms", type=float, default=0.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--levels", default="1,64")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        port, rest = int(args.serve[0]), args.serve[1:]
        asyncio.run(serve_proxy(port, rest[0], rest[1] == "batched", float(rest[2]), rest[3:])
                    if rest else serve_hop(port))
        return
    sim_port, proxy_port, *hop_ports = free_ports(2 + args.hops)
    sim = start_sim(sim_port)
    procs = [spawn("--serve", str(p)) for p in hop_ports]
    procs.append(spawn("--serve", str(proxy_port),
                       f"http://127.0.0.1:{sim_port}/v1/chat/completions",
                       "batched" if args.batched else "each", str(args.linger_ms / 1e3),
                       *(f"127.0.0.1:{p}" for p in hop_ports)))
    pids = [p.pid for p in procs]  # the hops, then the proxy
    try:
        cpu0 = [cpu_seconds(pid) for pid in pids]
        result = asyncio.run(compare(sim_port, f"127.0.0.1:{proxy_port}", args.seconds,
                                     [int(x) for x in args.levels.split(",")]))
        cpu = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
    finally:
        for p in [*procs, sim]:
            p.terminate()
            p.wait(10)
    requests = sum(v["through"]["n"] for v in result.values())
    result_all = {"hops": args.hops, "batched": args.batched, "linger_ms": args.linger_ms,
                  "levels": result, "load_average": os.getloadavg()[0],
                  "proxy_cpu_ms_per_request": cpu[-1] / requests * 1e3,
                  "hops_cpu_ms_per_request": sum(cpu[:-1]) / requests * 1e3}
    if args.json:
        print(json.dumps(result_all, indent=2))
        return
    how = (" (batched" + (f", linger {args.linger_ms:g} ms)" if args.linger_ms else ")")
           if args.batched else "")
    print(f"bare proxy (gRPC in, aiohttp to the simulator), {args.hops} bare hop(s) per "
          f"request{how}, load {result_all['load_average']:.2f}")
    print(f"{'conc':>4} {'direct p50':>10} {'proxy p50':>9} {'added p50':>9} {'req/s':>7}")
    for c, v in result.items():
        print(f"{c:>4} {v['direct']['p50_ms']:>10.2f} {v['through']['p50_ms']:>9.2f} "
              f"{v['added_p50_ms']:>9.2f} {v['through']['rps']:>7.0f}")
    print(f"CPU per request (all levels): proxy {result_all['proxy_cpu_ms_per_request']:.3f} ms,"
          f" hops {result_all['hops_cpu_ms_per_request']:.3f} ms")


if __name__ == "__main__":
    main()
