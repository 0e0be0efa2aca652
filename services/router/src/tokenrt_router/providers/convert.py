"""Message conversions the Anthropic and Gemini adapters share."""

from __future__ import annotations

import json
from typing import Any

from tokenrt.v1 import common_pb2
from tokenrt_router.providers.base import Failure, ProviderError


def text_of(m: common_pb2.Message) -> str:
    """The text parts of a message, joined."""
    return "".join(p.text for p in m.content if p.WhichOneof("part") == "text")


def tool_args(text: str, provider: str) -> dict[str, Any]:
    """A tool call's arguments_json as the object both APIs require."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        raise ProviderError(Failure.BAD_REQUEST, "a tool call's arguments_json is not "
                            f"JSON; {provider} needs an object") from None
    return value if isinstance(value, dict) else {"value": value}


def data_url(url: str) -> tuple[str, str]:
    """(media type, base64 data) of a `data:` URL."""
    head, _, data = url.partition(",")
    return head.removeprefix("data:").split(";", 1)[0] or "image/png", data


def append_turn(turns: list[dict[str, Any]], role: str, key: str,
                items: list[dict[str, Any]]) -> None:
    """Add a turn, merging it into the previous one of the same role (both APIs want
    user and assistant/model turns to alternate)."""
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})
