"""Code in messages: file copies (tool results that read a file, fenced blocks that name a
path), their deduplication, and the optional whitespace and comment rewrites."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import xxhash

from tokenrt.v1 import common_pb2
from tokenrt_compressor.graph import Slot

_FENCE = re.compile(r"```([\w+-]*)[ \t]*([^\n`]*)\n(.*?)\n?```", re.DOTALL)
_LABEL = re.compile(r"(?:^|\n)[ \t]*(?:#+|//|File:|file:|\*\*)?[ \t]*`?([\w./-]+\.\w{1,8})`?"
                    r"\**:?[ \t]*\n?$")
_PATH_KEYS = ("path", "file", "file_path", "filepath", "filename", "target_file", "uri")
_COMMENT = re.compile(r"^[ \t]*(?://.*|#(?:[ #].*)?|/\*.*\*/)$")
_INNER_SPACES = re.compile(r"(?<=\S)[ \t]{2,}")
# Shorter copies are not worth a stub.
MIN_DEDUP_CHARS = 200


@dataclass(frozen=True)
class Copy:
    """A file's text inside a message: content part `part` of message `msg` of slot `slot`,
    characters [start, end) (the whole part for a tool result)."""

    slot: int
    msg: int
    part: int
    start: int
    end: int
    path: str  # "" when the copy names no path
    digest: str


def _call_paths(slot: Slot) -> dict[str, str]:
    paths: dict[str, str] = {}
    for m in slot.messages:
        for call in m.tool_calls:
            try:
                args = json.loads(call.arguments_json or "{}")
            except ValueError:
                continue
            if isinstance(args, dict):
                for key in _PATH_KEYS:
                    if isinstance(args.get(key), str):
                        paths[call.id] = args[key]
                        break
    return paths


def _hash(text: str) -> str:
    return xxhash.xxh3_64_hexdigest(text.encode("utf-8", "surrogatepass"))


def copies(slots: Sequence[Slot]) -> list[Copy]:
    """Every file copy in the conversation, in order."""
    out: list[Copy] = []
    for s, slot in enumerate(slots):
        paths = _call_paths(slot)
        for j, m in enumerate(slot.messages):
            for k, part in enumerate(m.content):
                if not part.HasField("text"):
                    continue
                text = part.text
                if m.role == common_pb2.ROLE_TOOL:
                    path = paths.get(m.tool_call_id, "")
                    if path or len(text) >= MIN_DEDUP_CHARS:
                        out.append(Copy(s, j, k, 0, len(text), path, _hash(text)))
                    continue
                if "```" not in text:  # no fence: spare the regex scan
                    continue
                for f in _FENCE.finditer(text):
                    path = f.group(2).strip()
                    if not re.fullmatch(r"[\w./-]+\.\w{1,8}", path):
                        label = _LABEL.search(text[max(0, f.start() - 200):f.start()])
                        path = label.group(1) if label else ""
                    out.append(Copy(s, j, k, f.start(3), f.end(3), path, _hash(f.group(3))))
    return out


def stale(found: Sequence[Copy], by_path: bool) -> list[tuple[Copy, str]]:
    """Older copies superseded by a later one: by path (code_aware: the newest version of a
    file wins) or by identical content (incremental). Returns (copy, label) pairs."""
    newest: dict[str, int] = {}
    keys: list[str] = []
    for i, c in enumerate(found):
        if by_path:
            key = f"path:{c.path}" if c.path else f"hash:{c.digest}"
        else:
            key = f"hash:{c.digest}"
        keys.append(key)
        newest[key] = i
    out = []
    for i, c in enumerate(found):
        if newest[keys[i]] != i and c.end - c.start >= MIN_DEDUP_CHARS:
            later = found[newest[keys[i]]]
            same = later.digest == c.digest
            label = c.path or "this content"
            out.append((c, f"[{label}: {'identical ' if same else 'older '}copy omitted; "
                           "the newest copy appears later in this conversation]"))
    return out


def replace_spans(slot: Slot, edits: Sequence[tuple[Copy, str]]) -> None:
    """Replace copies inside one slot's messages (edits all belong to that slot)."""
    order = sorted(edits, key=lambda e: (e[0].msg, e[0].part, -e[0].start))
    messages = [_clone(m) for m in slot.messages]
    for c, stub in order:
        part = messages[c.msg].content[c.part]
        part.text = part.text[:c.start] + stub + part.text[c.end:]
    slot.messages = messages


def _clone(m: common_pb2.Message) -> common_pb2.Message:
    out = common_pb2.Message()
    out.CopyFrom(m)
    return out


def collapse_whitespace(text: str) -> str:
    """Trailing spaces removed, runs of blank lines cut to one, runs of spaces inside a line
    (not its indentation) cut to one."""
    out: list[str] = []
    blank = 0
    for line in text.split("\n"):
        line = line.rstrip()
        if not line:
            blank += 1
            if blank > 1:
                continue
        else:
            blank = 0
            body = line.lstrip(" \t")
            line = line[:len(line) - len(body)] + _INNER_SPACES.sub(" ", body)
        out.append(line)
    return "\n".join(out)


def drop_comments(code: str) -> str:
    """Whole-line comments removed (`#`, `//`, one-line `/* */`); preprocessor lines and
    shebangs stay."""
    return "\n".join(line for line in code.split("\n") if not _COMMENT.match(line))


def rewrite_code(slot: Slot, rewrite: Callable[[str], str]) -> bool:
    """Apply `rewrite` to the code in a slot (fenced bodies, file tool results)."""
    changed = False
    messages = [_clone(m) for m in slot.messages]
    for m in messages:
        for part in m.content:
            if not part.HasField("text"):
                continue
            if m.role == common_pb2.ROLE_TOOL:
                new = rewrite(part.text)
            else:
                new = _FENCE.sub(lambda f: f.group(0)[:f.start(3) - f.start()]
                                 + rewrite(f.group(3)) + f.group(0)[f.end(3) - f.start():],
                                 part.text)
            if new != part.text:
                part.text = new
                changed = True
    if changed:
        slot.messages = messages
    return changed


def rewrite_text(slot: Slot, rewrite: Callable[[str], str]) -> bool:
    """Apply `rewrite` to every text part of a slot."""
    changed = False
    messages = [_clone(m) for m in slot.messages]
    for m in messages:
        for part in m.content:
            if part.HasField("text"):
                new = rewrite(part.text)
                if new != part.text:
                    part.text = new
                    changed = True
    if changed:
        slot.messages = messages
    return changed
