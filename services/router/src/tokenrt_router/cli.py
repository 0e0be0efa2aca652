"""`tokenrt chat` (talks to the router's gRPC API) and `tokenrt sim` (the simulator).

Wire with `tokenrt_router.cli.register(subparsers)`; it registers both commands.
The API key comes from TOKENRT_API_KEY (never from the command line, so it stays out
of shell history and process lists).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import grpc
from google.protobuf import json_format

from tokenrt.v1 import common_pb2, router_pb2, router_pb2_grpc
from tokenrt_common.settings import SettingsError, load_settings
from tokenrt_router.refusal import DETAIL_KEY
from tokenrt_router.sim import cli as sim_cli

# Not a setting (settings are never secrets): read here and kept out of load_settings.
KEY_ENV = "TOKENRT_API_KEY"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("chat", help="send one prompt through the router")
    p.add_argument("prompt")
    p.add_argument("--model", required=True, help="e.g. sim/gpt-4o-mini")
    p.add_argument("--session", default="", help="session id (a budget scope)")
    p.add_argument("--stream", action="store_true", help="print the answer as it streams")
    p.add_argument("--json", action="store_true", help="print the completion as JSON")
    p.add_argument("--max-output", type=int, default=0, help="max output tokens")
    p.set_defaults(func=chat_command)
    sim_cli.register(subparsers)


def chat_command(args: argparse.Namespace) -> int:
    key = os.environ.get(KEY_ENV, "")
    if not key:
        print("tokenrt chat: set TOKENRT_API_KEY to a router API key", file=sys.stderr)
        return 2
    try:
        settings = load_settings({k: v for k, v in os.environ.items() if k != KEY_ENV})
    except SettingsError as exc:
        print(f"tokenrt chat: {exc}", file=sys.stderr)
        return 2
    req = router_pb2.CompleteRequest(
        session_id=args.session,
        messages=[common_pb2.Message(role=common_pb2.ROLE_USER,
                                     content=[common_pb2.ContentPart(text=args.prompt)])],
        preferences=router_pb2.RoutingPreferences(forced_model=args.model))
    if args.max_output:
        req.sampling.max_output_tokens = args.max_output
    try:
        return asyncio.run(_chat(settings.endpoint("router").address, key, req, args))
    except grpc.aio.AioRpcError as exc:
        print(f"tokenrt chat: {exc.code().name}: {exc.details()}", file=sys.stderr)
        for k, v in exc.trailing_metadata() or ():
            if k == DETAIL_KEY:
                detail = common_pb2.ErrorDetail.FromString(v)
                print(json_format.MessageToJson(detail, indent=None), file=sys.stderr)
        return 1


async def _chat(address: str, key: str, req: router_pb2.CompleteRequest,
                args: argparse.Namespace) -> int:
    meta = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(address) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        if args.stream:
            done = None
            async for ev in stub.StreamComplete(router_pb2.StreamCompleteRequest(request=req),
                                                metadata=meta, timeout=300):
                kind = ev.WhichOneof("event")
                if kind == "delta" and not args.json:
                    print(ev.delta.text, end="", flush=True)
                elif kind == "done":
                    done = ev.done
            if done is None:
                return 1
            completion = done
            if not args.json:
                print()
        else:
            resp = await stub.Complete(req, metadata=meta, timeout=300)
            completion = resp.completion
            if not args.json:
                print("".join(p.text for p in completion.message.content))
    if args.json:
        print(json_format.MessageToJson(completion, indent=None))
    else:
        u = completion.usage
        print(f"-- {completion.served_model}: {u.input_tokens} in / {u.output_tokens} out, "
              f"{completion.cost_nusd} nusd, cache {'hit' if completion.cache.hit else 'miss'}",
              file=sys.stderr)
    return 0
