"""`tokenrt cache`: response-cache statistics, clearing and tenant configuration.

    tokenrt cache stats [--tenant ORG[/PROJECT[/USER]]] [--json]
    tokenrt cache clear --tenant ORG[/PROJECT[/USER]] [--key K | --tag T | --model M]
    tokenrt cache config --tenant ORG[/PROJECT] [--semantic on|off] [--threshold 0.8]
                         [--ttl SECONDS] [--max-entries N] [--max-entry-bytes N]
                         [--per-user on|off] [--backend lexical|local|provider]
                         [--embedding-model NAME] [--json]

`clear` without a selector removes every entry of the tenant (and of the namespaces below
it). `config` without settings prints the effective config. The lead wires `register`
into `tokenrt`; `python -m tokenrt_cache.cli` runs the same commands on their own. Exit
codes: 0 done, 1 the cache could not be reached or refused the call, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import grpc
from google.protobuf import json_format

from tokenrt.v1 import cache_pb2, cache_pb2_grpc, common_pb2
from tokenrt_cache.core import BACKEND_NAMES
from tokenrt_common.client import open_channel
from tokenrt_common.settings import SettingsError, load_settings

NUSD_PER_USD = Decimal(1_000_000_000)


class CliError(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def parse_tenant(text: str) -> common_pb2.Tenant:
    parts = text.split("/", 2)
    if not parts[0] or any(not p for p in parts):
        raise CliError(f"--tenant {text!r}: use ORG, ORG/PROJECT or ORG/PROJECT/USER")
    parts += [""] * (3 - len(parts))
    return common_pb2.Tenant(org_id=parts[0], project_id=parts[1], user_id=parts[2])


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError("use on or off")
    return text == "on"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `cache stats`, `cache clear` and `cache config` to a `tokenrt` parser."""
    p = subparsers.add_parser("cache", help="response cache: stats, clear, tenant config")
    sub = p.add_subparsers(dest="cache_command", required=True)
    s = sub.add_parser("stats", help="hits, misses, hit rate, entries and savings per tenant")
    s.add_argument("--tenant", help="ORG, ORG/PROJECT or ORG/PROJECT/USER (default: all)")
    s.add_argument("--json", action="store_true", help="print the StatsResponse as JSON")
    s.set_defaults(func=lambda a: _run(_stats, a))
    c = sub.add_parser("clear", help="remove a tenant's entries (all, or by key, tag, model)")
    c.add_argument("--tenant", required=True, help="ORG, ORG/PROJECT or ORG/PROJECT/USER")
    what = c.add_mutually_exclusive_group()
    what.add_argument("--key", help="one entry by the key Lookup returned")
    what.add_argument("--tag", help="every entry stored with this tag")
    what.add_argument("--model", help="every entry of this model")
    c.set_defaults(func=lambda a: _run(_clear, a))
    g = sub.add_parser("config", help="show or change a tenant's cache configuration")
    g.add_argument("--tenant", required=True, help="ORG or ORG/PROJECT")
    g.add_argument("--semantic", type=_on_off, help="semantic caching on or off")
    g.add_argument("--threshold", type=float, help="similarity needed for a semantic hit")
    g.add_argument("--ttl", type=int, help="default entry lifetime in seconds")
    g.add_argument("--max-entries", type=int, help="entries held before the oldest go")
    g.add_argument("--max-entry-bytes", type=int, help="largest answer stored, in bytes")
    g.add_argument("--per-user", type=_on_off, help="separate namespaces per user")
    g.add_argument("--backend", choices=sorted(BACKEND_NAMES),
                   help="semantic similarity: lexical (MinHash), local (MiniLM) or provider "
                        "(embeddings endpoint); its default threshold unless --threshold")
    g.add_argument("--embedding-model", help="the provider's embedding model")
    g.add_argument("--json", action="store_true", help="print the config as JSON")
    g.set_defaults(func=lambda a: _run(_config, a))


def _usd(nusd: int) -> str:
    return f"{(Decimal(nusd) / NUSD_PER_USD):.6f}"


def _row(s: cache_pb2.TenantCacheStats) -> list[str]:
    t = s.tenant
    name = "/".join(p for p in (t.org_id, t.project_id, t.user_id) if p) or "(total)"
    return [name, str(s.hits), str(s.semantic_hits), str(s.misses),
            f"{s.hit_rate_bp / 100:.2f}%", str(s.entries), str(s.stored_bytes),
            str(s.saved_tokens), _usd(s.saved_cost_nusd)]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in rows)


async def _stats(stub: cache_pb2_grpc.CacheServiceStub, args: argparse.Namespace) -> None:
    req = cache_pb2.StatsRequest()
    if args.tenant:
        req.tenant.CopyFrom(parse_tenant(args.tenant))
    answer = await stub.Stats(req)
    if args.json:
        print(json_format.MessageToJson(answer, always_print_fields_with_no_presence=True))
        return
    head = ["tenant", "hits", "semantic", "misses", "hit rate", "entries", "bytes",
            "saved tokens", "saved USD"]
    print(_table([head, *(_row(s) for s in answer.tenants), _row(answer.total)]))


async def _clear(stub: cache_pb2_grpc.CacheServiceStub, args: argparse.Namespace) -> None:
    req = cache_pb2.InvalidateRequest(tenant=parse_tenant(args.tenant))
    if args.key:
        req.key = args.key
    elif args.tag:
        req.tag = args.tag
    elif args.model:
        req.model = args.model
    else:
        req.all = True
    answer = await stub.Invalidate(req)
    print(f"removed {answer.removed_entries} entries")


async def _config(stub: cache_pb2_grpc.CacheServiceStub, args: argparse.Namespace) -> None:
    tenant = parse_tenant(args.tenant)
    current = (await stub.GetTenantConfig(cache_pb2.GetTenantConfigRequest(tenant=tenant))).config
    changes: dict[str, Any] = {
        "semantic_enabled": args.semantic, "similarity_threshold": args.threshold,
        "default_ttl_seconds": args.ttl, "max_entries": args.max_entries,
        "max_entry_bytes": args.max_entry_bytes, "per_user": args.per_user,
        "embedding_backend": BACKEND_NAMES.get(args.backend),
        "embedding_model": args.embedding_model}
    if args.backend is not None and args.threshold is None:
        changes["similarity_threshold"] = 0.0  # the new backend's default
    if any(v is not None for v in changes.values()):
        for name, value in changes.items():
            if value is not None:
                setattr(current, name, value)
        current = (await stub.SetTenantConfig(
            cache_pb2.SetTenantConfigRequest(config=current))).config
    if args.json:
        print(json_format.MessageToJson(current, always_print_fields_with_no_presence=True))
        return
    for name in ("semantic_enabled", "similarity_threshold", "default_ttl_seconds",
                 "max_entries", "max_entry_bytes", "per_user", "embedding_backend",
                 "embedding_model"):
        value = getattr(current, name)
        if name == "embedding_backend":
            value = cache_pb2.EmbeddingBackend.Name(value)
        print(f"{name}: {round(value, 4) if isinstance(value, float) else value}")


def _run(command: Any, args: argparse.Namespace) -> int:
    async def go() -> None:
        settings = load_settings()
        async with open_channel(settings, "cache") as channel:
            await command(cache_pb2_grpc.CacheServiceStub(channel), args)

    try:
        asyncio.run(go())
        return 0
    except (CliError, SettingsError) as exc:
        print(f"tokenrt cache: {exc}", file=sys.stderr)
        return getattr(exc, "code", 2)
    except grpc.aio.AioRpcError as exc:
        print(f"tokenrt cache: the cache answered {exc.code().name}: {exc.details()}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokenrt")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
