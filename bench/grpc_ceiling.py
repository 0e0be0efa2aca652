"""The ceiling of Python gRPC on this machine: a bare grpc.aio server, no tokenrt code.

A server process answering the standard health check (no interceptors, no work) and one
client process keeping N unary calls in flight for a few seconds. Prints calls/s,
latency and the CPU each side spends per call, read from /proc. Whatever a tokenrt
service does on top of this costs more, so calls/s here bound every unary-RPC target
(budget pairs/s, cache lookups/s, router requests/s) from above.

Run: `make bench-grpc`
(or `.venv/bin/python bench/grpc_ceiling.py [--seconds 5] [--in-flight 64] [--json]`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tokenrt_testkit.cpu import cpu_seconds


async def serve(port: int) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def drive(port: int, seconds: float, in_flight: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        for _ in range(200):  # warm up
            await stub.Check(request)
        latencies: list[float] = []
        end = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < end:
                started = time.perf_counter()
                await stub.Check(request)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {"calls": len(latencies), "wall_s": wall,
            "p50_ms": statistics.median(latencies) * 1e3,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
        result = asyncio.run(drive(port, args.seconds, args.in_flight))
        server_cpu = cpu_seconds(server.pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
    finally:
        server.terminate()
        server.wait()
    calls = result["calls"] + 200
    result.update({
        "in_flight": args.in_flight, "calls_per_s": result["calls"] / result["wall_s"],
        "server_cpu_ms_per_call": server_cpu / calls * 1e3,
        "client_cpu_ms_per_call": client_cpu / calls * 1e3,
        "cores": os.cpu_count() or 0, "load_average": os.getloadavg()[0]})
    if args.json:
        print(json.dumps(result))
        return
    print(f"bare grpc.aio unary (health Check), {args.in_flight} in flight, "
          f"{result['cores']} cores, load {result['load_average']:.2f}")
    print(f"  {result['calls_per_s']:,.0f} calls/s   p50 {result['p50_ms']:.2f} ms   "
          f"p99 {result['p99_ms']:.2f} ms")
    print(f"  CPU per call: server {result['server_cpu_ms_per_call']:.3f} ms, "
          f"client {result['client_cpu_ms_per_call']:.3f} ms")


if __name__ == "__main__":
    main()
