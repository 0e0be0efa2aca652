"""`tokenrt chat` (talks to the router's gRPC API), `tokenrt keys` (API keys, with an
admin key) and `tokenrt sim` (the simulator).

Wire with `tokenrt_router.cli.register(subparsers)`; it registers all three commands.
The API key comes from TOKENRT_API_KEY (never from the command line, so it stays out
of shell history and process lists).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from tokenrt.v1 import common_pb2, router_pb2, router_pb2_grpc
from tokenrt_common.client import open_channel
from tokenrt_common.settings import Settings, SettingsError, load_settings
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
    _register_keys(subparsers)
    sim_cli.register(subparsers)


def _register_keys(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("keys", help="create, list and revoke router API keys "
                              "(TOKENRT_API_KEY must be an admin key)")
    sub = p.add_subparsers(dest="keys_command", required=True)
    c = sub.add_parser("create", help="create a key and print it once")
    c.add_argument("--org", required=True)
    c.add_argument("--project", required=True)
    c.add_argument("--user", default="", help="bind the key to one user")
    c.add_argument("--name", default="", help="a label, e.g. the laptop it lives on")
    c.add_argument("--admin", action="store_true", help="may manage its organization's keys")
    c.add_argument("--service", action="store_true",
                   help="a service key (e.g. the compressor's): may act for any tenant named "
                        "in the tokenrt-act-for-* headers; bootstrap admin only")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=keys_command)
    ls = sub.add_parser("list", help="list keys (never their secrets)")
    ls.add_argument("--org", default="", help="required unless the key is the bootstrap admin")
    ls.add_argument("--project", default="")
    ls.add_argument("--all", action="store_true", help="include revoked keys")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=keys_command)
    r = sub.add_parser("revoke", help="revoke a key (every replica within seconds)")
    r.add_argument("api_key_id")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=keys_command)


def _connect(command: str) -> tuple[Settings, str] | int:
    """(settings, API key), or exit code 2 with the reason on stderr. The channel is
    made from the settings, so it speaks TLS when TOKENRT_TLS_MODE asks for it."""
    key = os.environ.get(KEY_ENV, "")
    if not key:
        print(f"tokenrt {command}: set TOKENRT_API_KEY to a router API key", file=sys.stderr)
        return 2
    try:
        settings = load_settings({k: v for k, v in os.environ.items() if k != KEY_ENV})
    except SettingsError as exc:
        print(f"tokenrt {command}: {exc}", file=sys.stderr)
        return 2
    return settings, key


def _failed(command: str, exc: grpc.aio.AioRpcError) -> int:
    print(f"tokenrt {command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
    for k, v in exc.trailing_metadata() or ():
        if k == DETAIL_KEY:
            detail = common_pb2.ErrorDetail.FromString(v)
            print(json_format.MessageToJson(detail, indent=None), file=sys.stderr)
    return 1


def _as_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def keys_command(args: argparse.Namespace) -> int:
    target = _connect("keys")
    if isinstance(target, int):
        return target
    try:
        return asyncio.run(_keys(*target, args))
    except grpc.aio.AioRpcError as exc:
        return _failed("keys", exc)


async def _keys(settings: Settings, key: str, args: argparse.Namespace) -> int:
    meta = (("authorization", f"Bearer {key}"),)
    async with open_channel(settings, "router") as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        if args.keys_command == "create":
            made = await stub.CreateApiKey(router_pb2.CreateApiKeyRequest(
                tenant=common_pb2.Tenant(org_id=args.org, project_id=args.project,
                                         user_id=args.user),
                name=args.name, admin=args.admin, service=args.service), metadata=meta,
                timeout=30)
            if args.json:
                print(json.dumps(_as_dict(made)))
            else:
                print(made.secret)
                print(f"-- {made.api_key.api_key_id} for {_tenant(made.api_key)}: store this "
                      "key now, it cannot be shown again", file=sys.stderr)
            return 0
        if args.keys_command == "revoke":
            gone = await stub.RevokeApiKey(router_pb2.RevokeApiKeyRequest(
                api_key_id=args.api_key_id), metadata=meta, timeout=30)
            print(json.dumps(_as_dict(gone.api_key)) if args.json
                  else f"revoked {gone.api_key.api_key_id} ({_tenant(gone.api_key)})")
            return 0
        rows: list[router_pb2.ApiKey] = []
        token = ""
        while True:
            page = await stub.ListApiKeys(router_pb2.ListApiKeysRequest(
                org_id=args.org, project_id=args.project, include_revoked=args.all,
                page_size=500, page_token=token), metadata=meta, timeout=30)
            rows += page.api_keys
            token = page.next_page_token
            if not token:
                break
    if args.json:
        print(json.dumps([_as_dict(r) for r in rows]))
        return 0
    print(f"{'ID':<22} {'PREFIX':<9} {'TENANT':<36} {'ROLE':<8} {'NAME':<16} STATE")
    for r in rows:
        state = ("revoked " + r.revoked_at.ToJsonString() if r.HasField("revoked_at")
                 else "active")
        print(f"{r.api_key_id:<22} {r.key_prefix:<9} {_tenant(r):<36} "
              f"{_role(r):<8} {r.name[:16]:<16} {state}")
    return 0


def _role(k: router_pb2.ApiKey) -> str:
    return "+".join(n for n, on in (("admin", k.admin), ("service", k.service)) if on)


def _tenant(k: router_pb2.ApiKey) -> str:
    t = k.tenant
    return "/".join(x for x in (t.org_id, t.project_id, t.user_id) if x)


def chat_command(args: argparse.Namespace) -> int:
    target = _connect("chat")
    if isinstance(target, int):
        return target
    req = router_pb2.CompleteRequest(
        session_id=args.session,
        messages=[common_pb2.Message(role=common_pb2.ROLE_USER,
                                     content=[common_pb2.ContentPart(text=args.prompt)])],
        preferences=router_pb2.RoutingPreferences(forced_model=args.model))
    if args.max_output:
        req.sampling.max_output_tokens = args.max_output
    try:
        return asyncio.run(_chat(*target, req, args))
    except grpc.aio.AioRpcError as exc:
        return _failed("chat", exc)


async def _chat(settings: Settings, key: str, req: router_pb2.CompleteRequest,
                args: argparse.Namespace) -> int:
    meta = (("authorization", f"Bearer {key}"),)
    async with open_channel(settings, "router") as ch:
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
