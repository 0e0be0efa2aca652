"""`tokenrt sim`: run the OpenAI-compatible simulator in the foreground.

Wire with `tokenrt_router.sim.cli.register(subparsers)`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from tokenrt_router.sim.server import SimConfig, serve


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("sim", help="run the OpenAI-compatible LLM simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--latency-ms", type=float, default=0.0,
                   help="delay before a JSON answer (default 0)")
    p.add_argument("--ttft-ms", type=float, default=0.0,
                   help="delay before a stream's first chunk (default 0)")
    p.add_argument("--tps", type=float, default=0.0,
                   help="streamed tokens per second; 0 = as fast as possible (default)")
    p.set_defaults(func=sim_command)


def sim_command(args: argparse.Namespace) -> int:
    config = SimConfig(args.latency_ms, args.ttft_ms, args.tps)
    print(f"simulator listening on http://{args.host}:{args.port}/v1", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, config))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="tokenrt-sim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args()
    raise SystemExit(args.func(args))


if __name__ == "__main__":
    main()
