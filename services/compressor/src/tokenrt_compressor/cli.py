"""`tokenrt compress`: compress an OpenAI-style chat file locally, with the same core and
counting code the service runs (no server, no session state).

Wire with `tokenrt_compressor.cli.register(subparsers)`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import tokenrt_pricing.cli as pricing_cli
from tokenrt.v1 import common_pb2
from tokenrt_compressor import core
from tokenrt_compressor.counting import CounterMeter
from tokenrt_compressor.summary import Extractive
from tokenrt_counter.chunks import CountCache
from tokenrt_counter.cli import InputError, parse_chat
from tokenrt_counter.core import Counter, MessageError
from tokenrt_counter.tokenizers import Tokenizers
from tokenrt_pricing import CatalogError, ModelNotFound, format_usd
from tokenrt_pricing.cost import round_half_even, schedule_for

ROLE_NAMES = {common_pb2.ROLE_SYSTEM: "system", common_pb2.ROLE_USER: "user",
              common_pb2.ROLE_ASSISTANT: "assistant", common_pb2.ROLE_TOOL: "tool",
              common_pb2.ROLE_DEVELOPER: "developer"}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("compress", help="compress a chat to a token target, locally")
    p.add_argument("--model", required=True)
    p.add_argument("--target", required=True, type=int, help="target size in tokens")
    p.add_argument("--strategy", default="auto", choices=core.STRATEGIES)
    p.add_argument("--allow-whitespace", action="store_true",
                   help="code_aware may collapse whitespace in code")
    p.add_argument("--allow-comments", action="store_true",
                   help="code_aware may remove comment-only lines in code")
    p.add_argument("file", help="a JSON file with an OpenAI-style `messages` array, or -")
    p.add_argument("--json", action="store_true", help="print the messages and the report")
    p.set_defaults(func=compress_command)


def message_json(m: common_pb2.Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": ROLE_NAMES[m.role]}
    texts = [p.text for p in m.content if p.HasField("text")]
    if len(texts) == len(m.content) and len(texts) <= 1:
        out["content"] = texts[0] if texts else None
    else:
        out["content"] = [{"type": "text", "text": p.text} if p.HasField("text") else
                          {"type": "image_url", "image_url": {"url": p.image.url}}
                          for p in m.content]
    if m.name:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.name, "arguments": c.arguments_json}} for c in m.tool_calls]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    return out


def compress_command(args: argparse.Namespace) -> int:
    if args.target <= 0:
        return pricing_cli.fail(f"--target is {args.target}: it must be a positive number")
    try:
        catalog = pricing_cli.load_catalog()
        resolved = catalog.resolve(args.model)
        raw = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
        messages, tools = parse_chat(json.loads(raw))
    except ModelNotFound as exc:
        return pricing_cli.fail(str(exc))
    except OSError as exc:
        return pricing_cli.fail(f"cannot read {args.file}: {exc.strerror}")
    except json.JSONDecodeError as exc:
        return pricing_cli.fail(f"{args.file} is not JSON: {exc}")
    except (CatalogError, InputError, KeyError, TypeError) as exc:
        return pricing_cli.fail(f"bad chat input: {exc}")
    meter = CounterMeter(Counter(Tokenizers(), CountCache(64 << 20)), resolved.entry)
    options = core.Options(args.allow_whitespace, args.allow_comments)
    try:
        measured = meter.measure(messages, tools)
        result = core.compress(messages, measured.per_message, measured.fixed, args.target,
                               args.strategy, meter, options, None,
                               Extractive(meter.text).summarize_now)
    except MessageError as exc:
        return pricing_cli.fail(f"bad chat input: {exc}")
    except core.Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    prices, _ = schedule_for(resolved.price, result.compressed_tokens, False)
    saved = result.original_tokens - result.compressed_tokens
    saved_nusd = round_half_even(saved * prices.input, 1_000_000)
    if args.json:
        print(json.dumps({
            "messages": [message_json(m) for m in result.messages],
            "report": {
                "model": resolved.name, "original_tokens": result.original_tokens,
                "compressed_tokens": result.compressed_tokens, "target_tokens": args.target,
                "saved_tokens": saved, "saved_cost_nusd": saved_nusd,
                "strategy_requested": args.strategy, "strategy_used": result.strategy_used,
                "reason": result.reason, "exact": measured.accuracy.exact,
                "actions": [{"kind": a.kind, "input_indexes": list(a.input_indexes),
                             "output_index": a.output_index, "tokens_before": a.tokens_before,
                             "tokens_after": a.tokens_after, "note": a.note}
                            for a in result.actions]}}, indent=2))
        return 0
    print(f"{result.original_tokens} -> {result.compressed_tokens} tokens (target {args.target}; "
          f"{resolved.name}); saved {saved} tokens, ${format_usd(saved_nusd)} of input")
    print(f"strategy: {result.strategy_used} ({result.reason})")
    for a in result.actions:
        where = ",".join(map(str, a.input_indexes))
        print(f"  {a.kind:<21} messages {where}: {a.tokens_before} -> {a.tokens_after} "
              f"tokens  {a.note}")
    return 0
