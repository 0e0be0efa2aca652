"""The message graph: which messages form one unit, which units may never change.

A unit is one message, or an assistant message that calls tools together with the tool
results that answer it (they must follow it directly, one per call, as every provider
requires). Units are kept or dropped whole. A unit is pinned (never changed, never
dropped) when it holds a system or developer message, or when it belongs to the last
user turn: the last user message and everything after it (the tool calls and results
of the turn in progress).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import xxhash

from tokenrt.v1 import common_pb2
from tokenrt_counter.core import MessageError

Message: TypeAlias = common_pb2.Message
INSTRUCTIONS = (common_pb2.ROLE_SYSTEM, common_pb2.ROLE_DEVELOPER)


@dataclass(eq=False)
class Slot:
    """One unit of the input as the compression currently has it."""

    indexes: tuple[int, ...]  # indexes in the input
    messages: list[Message]  # current content (rewritten by code_aware / incremental)
    tokens: int  # current tokens of `messages`, framing included
    pinned: bool
    kept: bool = True
    original_tokens: int = 0
    notes: list[str] = field(default_factory=list)


def message_text(m: Message) -> str:
    """The text a reader sees in a message: its text parts and tool-call arguments."""
    parts = [p.text for p in m.content if p.HasField("text")]
    parts.extend(f"{c.name}({c.arguments_json})" for c in m.tool_calls)
    return "\n".join(parts)


def digest(m: Message) -> str:
    """Content address of a message (its deterministic protobuf encoding)."""
    return xxhash.xxh3_128_hexdigest(m.SerializeToString(deterministic=True))


def last_user_index(messages: Sequence[Message]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == common_pb2.ROLE_USER:
            return i
    return -1


def build_slots(messages: Sequence[Message], tokens: Sequence[int]) -> list[Slot]:
    """Group messages into units; raises MessageError for a malformed tool exchange."""
    last_user = last_user_index(messages)
    slots: list[Slot] = []
    i = 0
    n = len(messages)
    while i < n:
        m = messages[i]
        if m.role == common_pb2.ROLE_TOOL:
            raise MessageError(
                f"messages[{i}].tool_call_id",
                f"messages[{i}] is a tool result (tool_call_id {m.tool_call_id!r}) that does not "
                "directly follow the assistant message calling it; put each tool result right "
                "after its call")
        group = [i]
        if m.tool_calls:
            pending = {}
            for j, call in enumerate(m.tool_calls):
                if not call.id:
                    raise MessageError(f"messages[{i}].tool_calls[{j}].id",
                                       f"messages[{i}].tool_calls[{j}] has no id; the tool "
                                       "result must name it in tool_call_id")
                if call.id in pending:
                    raise MessageError(f"messages[{i}].tool_calls[{j}].id",
                                       f"messages[{i}] makes two tool calls with id {call.id!r}")
                pending[call.id] = j
            k = i + 1
            while k < n and messages[k].role == common_pb2.ROLE_TOOL:
                call_id = messages[k].tool_call_id
                if call_id not in pending:
                    raise MessageError(
                        f"messages[{k}].tool_call_id",
                        f"messages[{k}] answers tool call {call_id!r}, which messages[{i}] "
                        f"did not make (its calls: {', '.join(sorted(pending)) or 'none'}) or "
                        "which was answered already")
                del pending[call_id]
                group.append(k)
                k += 1
            if pending:
                first = min(pending.values())
                raise MessageError(
                    f"messages[{i}].tool_calls[{first}]",
                    f"messages[{i}] calls tools {', '.join(sorted(pending))} without a result "
                    "message; add a ROLE_TOOL message with that tool_call_id after it")
        pinned = any(messages[g].role in INSTRUCTIONS for g in group) or (
            last_user >= 0 and group[-1] >= last_user)
        cost = sum(tokens[g] for g in group)
        slots.append(Slot(tuple(group), [messages[g] for g in group], cost, pinned,
                          original_tokens=cost))
        i = group[-1] + 1
    return slots
