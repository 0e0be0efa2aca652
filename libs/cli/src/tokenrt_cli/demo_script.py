"""What `tokenrt demo` says to the router: an IDE session's prompts and the models to use.

Pure data: the scenario's texts, the provider presets, and a long conversation for the
compression step. Every prompt carries the run's workspace name, so a run never hits the
response cache of an earlier one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tokenrt.v1 import common_pb2

T = common_pb2


@dataclass(frozen=True)
class Preset:
    """Models of one provider: an everyday model and a premium one that degrades to a
    cheaper model in the catalog; `key_env` names the API key that selects it."""

    model: str
    premium_model: str
    key_env: str


PRESETS: dict[str, Preset] = {
    "sim": Preset("sim/gpt-4o-mini", "sim/gpt-4o", ""),
    "openai": Preset("gpt-4o-mini", "gpt-4o", "OPENAI_API_KEY"),
    "anthropic": Preset("claude-haiku-4-5", "claude-sonnet-4", "ANTHROPIC_API_KEY"),
    "gemini": Preset("gemini-2.5-flash", "gemini-2.5-pro", "GEMINI_API_KEY"),
}


def pick_provider(choice: str, env: Mapping[str, str]) -> str:
    """`auto`: the first provider whose API key is in the environment, else the simulator."""
    if choice != "auto":
        return choice
    for name, preset in PRESETS.items():
        if preset.key_env and env.get(preset.key_env):
            return name
    return "sim"


PARSE_DURATION = '''\
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in "90s", "15m", "24h" or "7d"."""
    number, unit = text[:-1], text[-1]
    return int(number) * UNITS[unit.upper()]
'''

EDIT_PROMPTS = (
    f"Explain what this function does:\n```python\n{PARSE_DURATION}```",
    "Write a pytest test for parse_duration that covers every unit.",
    "Fix the bug: parse_duration('90s') raises KeyError. Show the corrected line.",
)
WARNING_PROMPT = "Add a docstring example to parse_duration."
DEGRADE_PROMPT = "Review parse_duration for edge cases: empty input, negative numbers."
DENY_PROMPTS = ("Rename parse_duration to duration_seconds.",
                "Make parse_duration accept uppercase units.",
                "Add type hints to UNITS.")
SELECT_PROMPTS = (
    "complete this line: `total = sum(`",
    "Refactor the session cache across the codebase so concurrent writers cannot race; "
    "plan the migration and the locking.",
    "Summarize the changes of this branch as a commit message.",
)
COMPRESSION_PROMPT = "Given all of that, which function should I test first, and why?"


def text_message(role: int, text: str) -> common_pb2.Message:
    return T.Message(role=role, content=[T.ContentPart(text=text)])  # type: ignore[arg-type]


def conversation(workspace: str, prompt: str) -> list[common_pb2.Message]:
    return [text_message(T.ROLE_SYSTEM, f"You are the coding assistant of an IDE. Workspace "
                                        f"{workspace}. Answer briefly."),
            text_message(T.ROLE_USER, prompt)]


def _module(i: int) -> str:
    """A made-up source file of about 350 tokens."""
    lines = [f"# module_{i}.py: storage helpers, part {i}", "import json", "import os", ""]
    for j in range(6):
        lines += [f"def load_{i}_{j}(path: str, default: dict | None = None) -> dict:",
                  f'    """Read record {j} of part {i}; `default` when the file is missing."""',
                  "    if not os.path.exists(path):",
                  "        return dict(default or {})",
                  "    with open(path) as handle:",
                  f"        return json.load(handle).get('record_{j}', {{}})", ""]
    return "\n".join(lines)


def long_conversation(workspace: str, turns: int = 14) -> list[common_pb2.Message]:
    """An IDE session that pasted a file per turn: far more context than the question needs."""
    messages = conversation(workspace, "")[:1]
    for i in range(turns):
        messages.append(text_message(T.ROLE_USER, f"Here is module_{i}.py:\n```python\n"
                                                  f"{_module(i)}\n```\nAny problems?"))
        messages.append(text_message(T.ROLE_ASSISTANT,
                                     f"module_{i}.py reads JSON records; load_{i}_0 to "
                                     f"load_{i}_5 repeat the same pattern and could share "
                                     "one helper. No bugs found."))
    messages.append(text_message(T.ROLE_USER, COMPRESSION_PROMPT))
    return messages
