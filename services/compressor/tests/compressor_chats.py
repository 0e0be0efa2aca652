"""Synthetic IDE conversations for the compressor's tests and benchmark."""

from __future__ import annotations

import json
import random

from tokenrt.v1 import common_pb2

Message = common_pb2.Message
SYSTEM, USER, ASSISTANT, TOOL = (common_pb2.ROLE_SYSTEM, common_pb2.ROLE_USER,
                                 common_pb2.ROLE_ASSISTANT, common_pb2.ROLE_TOOL)


def text(role: int, body: str, **kw: str) -> Message:
    return Message(role=role, content=[common_pb2.ContentPart(text=body)], **kw)


def call(call_id: str, name: str, args: dict[str, str]) -> common_pb2.ToolCall:
    return common_pb2.ToolCall(id=call_id, name=name, arguments_json=json.dumps(args))


def source_file(rng: random.Random, path: str, functions: list[str], lines: int) -> str:
    """A plausible Python module defining `functions`, about `lines` lines long."""
    out = [f"# {path}", '"""Module docstring."""', "import os", ""]
    per = max(4, lines // max(1, len(functions)))
    for fn in functions:
        out.append(f"def {fn}(value, options=None):")
        out.append(f"    # {fn} handles the {rng.choice(['cache', 'budget', 'router'])} path")
        for k in range(per - 3):
            out.append(f"    step_{k} = value * {rng.randint(1, 999)} + len(str(options))  "
                       f"# note {rng.randint(0, 10**6)}")
        out.append("    return value")
        out.append("")
    return "\n".join(out)


def read_file_unit(call_id: str, path: str, content: str) -> list[Message]:
    return [Message(role=ASSISTANT, tool_calls=[call(call_id, "read_file", {"path": path})]),
            text(TOOL, content, tool_call_id=call_id)]


def ide_conversation(rng: random.Random, files: int, turns: int, lines: int,
                     asked: int) -> tuple[list[Message], list[str]]:
    """A long IDE session: files read by tools (some re-read after edits), pasted code,
    chatter; the last user turn asks about `asked` earlier files and functions. Returns the
    messages and the references the question names."""
    paths = [f"src/pkg{i % 7}/module_{i}.py" for i in range(files)]
    funcs = {p: [f"handle_{i}_{j}" for j in range(3)] for i, p in enumerate(paths)}
    contents = {p: source_file(rng, p, funcs[p], lines) for p in paths}
    messages = [text(SYSTEM, "You are a coding assistant inside an IDE. Answer precisely.")]
    n = 0
    for t in range(turns):
        p = rng.choice(paths)
        messages.append(text(USER, f"Turn {t}: please look at {p} and tell me what "
                                   f"{funcs[p][0]} does with the options."))
        n += 1
        messages.extend(read_file_unit(f"call_{n}", p, contents[p]))
        if rng.random() < 0.3:  # an edit: the file changes and is read again later
            contents[p] = contents[p].replace("return value", "return value + 1", 1)
        if rng.random() < 0.3:
            q = rng.choice(paths)
            messages.append(text(USER, f"Here is {q} as I have it open:\n```python {q}\n"
                                       f"{contents[q]}\n```"))
        messages.append(text(ASSISTANT, f"{funcs[p][0]} multiplies the value and returns it. "
                                        + "It also reads options. " * rng.randint(5, 40)))
    chosen = rng.sample(paths, asked)
    names = [rng.choice(funcs[p]) for p in chosen]
    question = ("Now, given " + ", ".join(chosen) + ", why do "
                + ", ".join(f"`{f}`" for f in names) + " disagree? Fix it.")
    messages.append(text(USER, question))
    return messages, chosen + names
