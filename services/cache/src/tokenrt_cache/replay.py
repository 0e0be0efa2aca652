"""Streamed answers: record the chunk boundaries of a stream, replay the same chunks.

A streamed answer is stored assembled (one assistant message) plus, per delta, where its
text and tool-call pieces ended (cache.proto ChunkBoundary). `deltas` cuts the assembled
message back into exactly the deltas that were streamed; `boundaries` is its inverse,
for the caller that stores a stream. Pure; offsets are in Unicode code points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenrt.v1 import cache_pb2


class ChunkError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ToolPiece:
    index: int
    # The call's id and name go with its first piece only (as providers stream them).
    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True)
class Delta:
    text: str = ""
    tool_calls: tuple[ToolPiece, ...] = field(default_factory=tuple)


def _text(r: cache_pb2.CachedResponse) -> str:
    return "".join(p.text for p in r.message.content if p.WhichOneof("part") == "text")


def check_chunks(r: cache_pb2.CachedResponse, where: str = "response") -> None:
    """Boundaries must be in order and within the assembled message (else ChunkError)."""
    if not r.chunks:
        return
    text_len = len(_text(r))
    arg_lens = [len(c.arguments_json) for c in r.message.tool_calls]
    text_end = 0
    arg_ends = [0] * len(arg_lens)
    for i, b in enumerate(r.chunks):
        f = f"{where}.chunks[{i}]"
        if not text_end <= b.text_end <= text_len:
            raise ChunkError(f"{f}.text_end", f"{f}.text_end must lie between the previous "
                             f"end ({text_end}) and the text length ({text_len})")
        text_end = b.text_end
        for j, piece in enumerate(b.tool_calls):
            if not 0 <= piece.index < len(arg_lens):
                raise ChunkError(f"{f}.tool_calls[{j}].index", f"{f}.tool_calls[{j}].index "
                                 f"names no tool call (the message has {len(arg_lens)})")
            if not arg_ends[piece.index] <= piece.arguments_end <= arg_lens[piece.index]:
                raise ChunkError(f"{f}.tool_calls[{j}].arguments_end",
                                 f"{f}.tool_calls[{j}].arguments_end must lie between the "
                                 "previous end and the arguments' length")
            arg_ends[piece.index] = piece.arguments_end
    if text_end != text_len or arg_ends != arg_lens:
        raise ChunkError(f"{where}.chunks", f"{where}.chunks must end where the assembled "
                         "message ends (the last boundaries cover all text and arguments)")


def deltas(r: cache_pb2.CachedResponse) -> list[Delta]:
    """The deltas to replay: the recorded chunks, or the whole message as one delta."""
    text = _text(r)
    calls = list(r.message.tool_calls)
    if not r.chunks:
        pieces = tuple(ToolPiece(i, c.id, c.name, c.arguments_json) for i, c in enumerate(calls))
        return [Delta(text, pieces)]
    out: list[Delta] = []
    text_at = 0
    arg_at = [0] * len(calls)
    started = [False] * len(calls)
    for b in r.chunks:
        cut: list[ToolPiece] = []
        for p in b.tool_calls:
            call = calls[p.index]
            first = not started[p.index]
            started[p.index] = True
            cut.append(ToolPiece(p.index, call.id if first else "", call.name if first else "",
                                    call.arguments_json[arg_at[p.index]:p.arguments_end]))
            arg_at[p.index] = p.arguments_end
        out.append(Delta(text[text_at:b.text_end], tuple(cut)))
        text_at = b.text_end
    return out


def boundaries(stream: list[Delta]) -> list[cache_pb2.ChunkBoundary]:
    """The boundaries to store for a stream of deltas (inverse of `deltas`)."""
    out = []
    text_end = 0
    arg_ends: dict[int, int] = {}
    for d in stream:
        text_end += len(d.text)
        ends = []
        for p in d.tool_calls:
            arg_ends[p.index] = arg_ends.get(p.index, 0) + len(p.arguments_json)
            ends.append(cache_pb2.ToolCallPieceEnd(index=p.index, arguments_end=arg_ends[p.index]))
        out.append(cache_pb2.ChunkBoundary(text_end=text_end, tool_calls=ends))
    return out
