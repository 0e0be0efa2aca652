"""`tokenrt count` (and, through tokenrt_pricing.cli, `tokenrt models` / `tokenrt price`).

Counting is local: the same library code the counter service runs, no server needed.
Models without a public tokenizer are estimated with the uncalibrated prior here (the
service serves the calibrated fit learned from provider-reported usage).

Wire with `tokenrt_counter.cli.register(subparsers)`; it registers all three commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import tokenrt_pricing.cli as pricing_cli
from tokenrt.v1 import common_pb2
from tokenrt_counter.chunks import CountCache
from tokenrt_counter.core import Counter, MessageError
from tokenrt_counter.tokenizers import Tokenizers
from tokenrt_pricing import CatalogError, ModelNotFound

ROLES = {"system": common_pb2.ROLE_SYSTEM, "user": common_pb2.ROLE_USER,
         "assistant": common_pb2.ROLE_ASSISTANT, "tool": common_pb2.ROLE_TOOL,
         "developer": common_pb2.ROLE_DEVELOPER}
DETAILS = {"low": common_pb2.IMAGE_DETAIL_LOW, "high": common_pb2.IMAGE_DETAIL_HIGH,
           "auto": common_pb2.IMAGE_DETAIL_AUTO}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    count = subparsers.add_parser("count", help="count tokens of a text or a chat, locally")
    count.add_argument("--model", required=True)
    count.add_argument("file", nargs="?", default="-", help="a file, or - for stdin (default)")
    count.add_argument("--messages", action="store_true",
                       help="the input is an OpenAI chat request in JSON: a list of messages "
                            "or an object with `messages` (and `tools`)")
    count.add_argument("--json", action="store_true", help="machine-readable output")
    count.set_defaults(func=count_command)
    pricing_cli.register(subparsers)


class InputError(ValueError):
    pass


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where} must be a string")
    return value


def _content(value: Any, where: str) -> list[common_pb2.ContentPart]:
    if value is None:
        return []
    if isinstance(value, str):
        return [common_pb2.ContentPart(text=value)]
    if not isinstance(value, list):
        raise InputError(f"{where} must be a string or a list of parts")
    parts = []
    for i, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(common_pb2.ContentPart(text=_text(part.get("text"), f"{where}[{i}].text")))
        elif kind == "image_url":
            image = part.get("image_url") or {}
            parts.append(common_pb2.ContentPart(image=common_pb2.ImagePart(
                url=_text(image.get("url"), f"{where}[{i}].image_url.url"),
                detail=DETAILS.get(image.get("detail", "auto"), common_pb2.IMAGE_DETAIL_AUTO))))
        else:
            raise InputError(f"{where}[{i}] must be a text or image_url part")
    return parts


def parse_chat(data: Any) -> tuple[list[common_pb2.Message], list[common_pb2.Tool]]:
    """An OpenAI Chat Completions request body (or just its messages) -> protobuf."""
    raw_messages = data.get("messages") if isinstance(data, dict) else data
    raw_tools = data.get("tools", []) if isinstance(data, dict) else []
    if not isinstance(raw_messages, list):
        raise InputError("expected a list of messages or an object with `messages`")
    messages = []
    for i, m in enumerate(raw_messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise InputError(f"messages[{i}].role must be one of {', '.join(ROLES)}")
        calls = [common_pb2.ToolCall(id=c.get("id", ""), name=c["function"]["name"],
                                     arguments_json=c["function"].get("arguments", ""))
                 for c in m.get("tool_calls") or []]
        messages.append(common_pb2.Message(
            role=ROLES[m["role"]], content=_content(m.get("content"), f"messages[{i}].content"),
            name=m.get("name", ""), tool_calls=calls, tool_call_id=m.get("tool_call_id", "")))
    tools = []
    for i, t in enumerate(raw_tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict):
            raise InputError(f"tools[{i}] must be {{\"type\": \"function\", \"function\": ...}}")
        tools.append(common_pb2.Tool(
            name=fn.get("name", ""), description=fn.get("description", ""),
            parameters_json_schema=json.dumps(fn["parameters"]) if "parameters" in fn else ""))
    return messages, tools


def count_command(args: argparse.Namespace) -> int:
    try:
        catalog = pricing_cli.load_catalog()
        resolved = catalog.resolve(args.model)
        raw = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()
    except ModelNotFound as exc:
        return pricing_cli.fail(str(exc))
    except OSError as exc:
        return pricing_cli.fail(f"cannot read {args.file}: {exc.strerror}")
    except (CatalogError, ValueError) as exc:
        return pricing_cli.fail(str(exc))
    text = raw.decode("utf-8", "replace")  # invalid UTF-8 -> U+FFFD, as the service does
    counter = Counter(Tokenizers(), CountCache(64 << 20))
    try:
        if args.messages:
            messages, tools = parse_chat(json.loads(text))
            result = counter.count_messages(resolved.entry, messages, tools)
            tokens, accuracy = result.total, result.accuracy
        else:
            tokens, accuracy = counter.count_text(resolved.entry, text)
    except (InputError, MessageError, KeyError, TypeError) as exc:
        return pricing_cli.fail(f"bad chat input: {exc}")
    except json.JSONDecodeError as exc:
        return pricing_cli.fail(f"--messages needs JSON input: {exc}")
    if args.json:
        print(json.dumps({"tokens": tokens, "exact": accuracy.exact, "model": resolved.name,
                          "tokenizer": resolved.entry.tokenizer, "source": accuracy.source,
                          "error_bound_tokens": accuracy.bound_tokens}))
    else:
        how = "exact" if accuracy.exact else f"estimated, ±{accuracy.bound_tokens}"
        print(f"{tokens} tokens ({how}; {resolved.entry.tokenizer}; {resolved.name})")
    return 0
