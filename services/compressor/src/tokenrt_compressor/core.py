"""Compression to an exact token target (pure: no I/O; counting through a `Meter`).

Token accounting: a chat's prompt tokens are the sum of its messages' tokens (each with
its chat framing) plus a fixed part (tool definitions and reply priming). That is how the
counter counts (tokenrt_counter.core), so the size of any selection of messages is the
fixed part plus the sum of the selected messages' counts, and only rewritten messages are
counted again. `compress` checks its result by that sum; the tests recount the output.

Every strategy keeps the invariants: output <= target; pinned units (system and developer
messages, the last user turn) verbatim; tool calls and results kept or dropped together;
order preserved; nothing changes when the input already fits (so compressing an output
again at the same target changes nothing). When even the pinned units exceed the target,
`Unreachable` says the smallest achievable size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tokenrt.v1 import common_pb2
from tokenrt_compressor import code, refs
from tokenrt_compressor.graph import Message, Slot, build_slots, digest, message_text
from tokenrt_compressor.summary import Summary

STRATEGIES = ("truncate", "selective_forget", "incremental", "summarize", "code_aware",
              "prefix_stable", "auto")
SUMMARY_HEADER = "[Summary of {n} earlier messages, which were omitted]\n"


class Meter(Protocol):
    def tokens(self, message: Message) -> int:
        """Tokens of one message, framing included, as the counter counts it."""
        ...

    def tokens_many(self, messages: Sequence[Message]) -> list[int]:
        """`tokens` of each message (one batch for the counter)."""
        ...


class Unreachable(Exception):
    def __init__(self, smallest: int, target: int, pinned: int) -> None:
        self.smallest = smallest
        super().__init__(
            f"target_tokens {target} cannot be met: the system/developer messages, the last "
            f"user turn and the tool definitions alone take {smallest} tokens "
            f"({pinned} pinned messages); ask for at least {smallest}")


@dataclass(frozen=True)
class Options:
    allow_whitespace_collapse: bool = False
    allow_comment_removal: bool = False
    # Largest summary, in tokens (also capped at a tenth of the target).
    summary_max_tokens: int = 1024
    # A session prefix at least this long makes `auto` choose prefix_stable.
    warm_prefix_min_tokens: int = 1024


@dataclass(frozen=True)
class Session:
    """What this session sent before: digests of the messages of the last compressed
    output (`sent`, in order) and of the last input (`seen`)."""

    sent: tuple[str, ...] = ()
    seen: frozenset[str] = frozenset()


@dataclass
class Action:
    kind: str  # dropped, summarized, deduplicated, whitespace_collapsed, comments_removed
    input_indexes: tuple[int, ...]
    tokens_before: int
    tokens_after: int
    note: str
    output_index: int = -1
    slot: Slot | None = None


@dataclass
class Result:
    messages: list[Message]
    original_tokens: int
    compressed_tokens: int
    target_tokens: int
    strategy_requested: str
    strategy_used: str
    reason: str
    actions: list[Action] = field(default_factory=list)
    prefix_tokens: int = 0
    prefix_messages: int = 0
    unchanged_messages: int = 0
    unchanged_tokens: int = 0
    summary: Summary | None = None
    # Digests for the session: of the output (what is sent) and of the input.
    sent: tuple[str, ...] = ()
    seen: tuple[str, ...] = ()


SummarizeFn = Callable[[Sequence[Message], int], Summary]


class _Run:
    """One compression in progress."""

    def __init__(self, messages: Sequence[Message], tokens: Sequence[int], fixed: int,
                 target: int, meter: Meter, options: Options,
                 digests: Sequence[str] | None = None) -> None:
        self.slots = build_slots(messages, tokens)
        # Digests computed by the caller (counting needed them), by message object.
        self._digests = {id(m): d for m, d in zip(messages, digests or (), strict=False)}
        self.fixed = fixed
        self.target = target
        self.meter = meter
        self.options = options
        self.actions: list[Action] = []
        self.question = next((message_text(messages[i]) for i in range(len(messages) - 1, -1, -1)
                              if messages[i].role == common_pb2.ROLE_USER), "")
        self.refs = refs.extract(self.question)
        self.summary: Summary | None = None
        self._copies: list[code.Copy] | None = None
        # Reference hits of a slot's current messages (prefix_stable sorts many times).
        self._scores: dict[tuple[int, ...], tuple[int, int, frozenset[int]]] = {}

    def _hits(self, s: Slot) -> tuple[int, int, frozenset[int]]:
        key = tuple(id(m) for m in s.messages)  # a rewrite replaces the messages
        hit = self._scores.get(key)
        if hit is None:
            text = "\n".join(message_text(m) for m in s.messages)
            tool = len(s.messages) > 1
            strong, weak = refs.score(text, self.refs, tool)
            shown = frozenset(i for i, r in enumerate(self.refs)
                              if strong and refs.score(text, [r], tool)[0])
            hit = self._scores[key] = (strong, weak, shown)
        return hit

    def ref_score(self, s: Slot) -> tuple[int, int]:
        """(strong, weak) hits of the question's references in the slot's text."""
        if not self.refs:
            return 0, 0
        strong, weak, _ = self._hits(s)
        return strong, weak

    def shown_refs(self) -> frozenset[int]:
        """The question's references (indexes) that a kept slot defines or shows."""
        if not self.refs:
            return frozenset()
        return frozenset().union(*(self._hits(s)[2] for s in self.slots if s.kept))

    def copies(self) -> list[code.Copy]:
        """The file copies in the slots (found once: `auto` looks before `dedup` edits)."""
        if self._copies is None:
            self._copies = code.copies(self.slots)
        return self._copies

    def total(self) -> int:
        return self.fixed + sum(s.tokens for s in self.slots if s.kept)

    def digest(self, m: Message) -> str:
        found = self._digests.get(id(m))
        return found if found is not None else digest(m)

    def fits(self) -> bool:
        return self.total() <= self.target

    def smallest(self, also: Sequence[Slot] = ()) -> int:
        keep = {id(s) for s in also}
        return self.fixed + sum(s.tokens for s in self.slots
                                if s.kept and (s.pinned or id(s) in keep))

    # ---- orders -----------------------------------------------------------------

    def droppable(self, protected: Sequence[Slot] = ()) -> list[Slot]:
        skip = {id(s) for s in protected}
        return [s for s in self.slots if s.kept and not s.pinned and id(s) not in skip]

    def selective_order(self, candidates: list[Slot]) -> list[Slot]:
        """Least important first: no reference before a reference, a definition or a shown
        file before a mention; then role (tool results and user words above assistant
        chatter), then recency."""
        n = max(len(self.slots), 1)
        position = {id(s): i for i, s in enumerate(self.slots)}

        def keep_priority(s: Slot) -> tuple[int, float]:
            strong, weak = self.ref_score(s)
            role = 2 if (len(s.messages) > 1 or s.messages[0].role == common_pb2.ROLE_USER) else 1
            return strong * 4 + weak, role + 2 * position[id(s)] / n

        return sorted(candidates, key=keep_priority)

    # ---- steps ------------------------------------------------------------------

    def drop(self, order: Sequence[Slot], readd: bool) -> None:
        dropped: list[Slot] = []
        total = self.total()
        for s in order:
            if total <= self.target:
                break
            s.kept = False
            total -= s.tokens
            dropped.append(s)
        if readd:  # most important first: fill the room left by the last (large) drop
            room = self.target - total
            for s in reversed(dropped):
                if s.tokens <= room:
                    s.kept = True
                    room -= s.tokens

    def recount(self, s: Slot) -> None:
        s.tokens = sum(self.meter.tokens(m) for m in s.messages)

    def dedup(self, by_path: bool) -> int:
        stale = [(c, stub) for c, stub in code.stale(self.copies(), by_path)
                 if self.slots[c.slot].kept and not self.slots[c.slot].pinned]
        self._copies = None  # the edits below move them
        by_slot: dict[int, list[tuple[code.Copy, str]]] = {}
        for c, stub in stale:
            by_slot.setdefault(c.slot, []).append((c, stub))
        before = {i: self.slots[i].tokens for i in by_slot}
        for i, edits in by_slot.items():
            code.replace_spans(self.slots[i], edits)
        edited = [self.slots[i] for i in by_slot]
        counts = iter(self.meter.tokens_many([m for s in edited for m in s.messages]))
        for i, edits in by_slot.items():
            s = self.slots[i]
            s.tokens = sum(next(counts) for _ in s.messages)
            paths = sorted({c.path or "repeated content" for c, _ in edits})
            self.actions.append(Action("deduplicated", s.indexes, before[i], s.tokens,
                                       "older copy of " + ", ".join(paths), slot=s))
        return len(stale)

    def rewrite(self, kind: str, fn: Callable[[str], str], note: str) -> None:
        for s in self.droppable():
            if self.fits():
                return
            before = s.tokens
            if code.rewrite_code(s, fn):
                self.recount(s)
                self.actions.append(Action(kind, s.indexes, before, s.tokens, note, slot=s))

    def code_rewrites(self) -> None:
        if self.options.allow_whitespace_collapse and not self.fits():
            self.rewrite("whitespace_collapsed", code.collapse_whitespace,
                         "whitespace collapsed in code")
        if self.options.allow_comment_removal and not self.fits():
            self.rewrite("comments_removed", code.drop_comments, "comment-only lines removed")

    # ---- prefix -----------------------------------------------------------------

    def sent_prefix(self, sent: Sequence[str]) -> tuple[list[Slot], list[Slot]]:
        """The slots matching, in order, the longest prefix of what the session sent
        (matched), and the unpinned slots between them that the session had dropped
        (gaps)."""
        keys = [tuple(self.digest(m) for m in s.messages) for s in self.slots]
        later: dict[tuple[str, ...], list[int]] = {}
        for i, k in enumerate(keys):
            later.setdefault(k, []).append(i)
        matched: list[Slot] = []
        gaps: list[Slot] = []
        p, i = 0, 0
        while p < len(sent) and i < len(self.slots):
            k = keys[i]
            if tuple(sent[p:p + len(k)]) == k:
                matched.append(self.slots[i])
                p += len(k)
                i += 1
                continue
            # sent[p] starts which later slot? Skip the slots between (dropped last time).
            nxt = next((j for j in range(i + 1, len(self.slots))
                        if tuple(sent[p:p + len(keys[j])]) == keys[j]), None)
            if nxt is None or any(s.pinned for s in self.slots[i:nxt]):
                break
            gaps.extend(self.slots[i:nxt])
            i = nxt
        # Gaps after the last match are not part of the prefix.
        if matched:
            last = self.slots.index(matched[-1])
            gaps = [g for g in gaps if self.slots.index(g) < last]
        else:
            gaps = []
        return matched, gaps

    def preserved(self, sent: Sequence[str]) -> tuple[int, int]:
        """Messages and tokens at the start of the output identical to what was sent."""
        messages = tokens = 0
        for s in self.slots:
            if not s.kept:
                continue
            keys = tuple(self.digest(m) for m in s.messages)
            if tuple(sent[messages:messages + len(keys)]) != keys:
                break
            messages += len(keys)
            tokens += s.tokens
        return messages, tokens

    # ---- output -----------------------------------------------------------------

    def finish(self, requested: str, used: str, reason: str) -> Result:
        out: list[Message] = []
        first_index: dict[int, int] = {}
        for s in self.slots:
            if s.kept:
                first_index[id(s)] = len(out)
                out.extend(s.messages)
        actions = [a for a in self.actions if a.slot is None or a.slot.kept]
        for a in actions:
            if a.slot is not None:
                a.output_index = first_index[id(a.slot)]
        for s in self.slots:
            if not s.kept and s.indexes:
                roles = "tool call and its results" if len(s.indexes) > 1 else \
                    common_pb2.Role.Name(s.messages[0].role).removeprefix("ROLE_").lower()
                actions.append(Action("dropped", s.indexes, s.original_tokens, 0, roles))
        actions.sort(key=lambda a: a.input_indexes[0] if a.input_indexes else -1)
        total = self.total()
        assert total <= self.target, (total, self.target)
        return Result(out, 0, total, self.target, requested, used, reason, actions,
                      sent=tuple(self.digest(m) for m in out))


def compress(messages: Sequence[Message], tokens: Sequence[int], fixed_tokens: int,
             target: int, strategy: str, meter: Meter, options: Options = Options(),
             session: Session | None = None, summarize: SummarizeFn | None = None,
             digests: Sequence[str] | None = None) -> Result:
    """Compress `messages` (whose counts are `tokens`; `fixed_tokens` for tools and
    priming) to at most `target` tokens. Raises MessageError for a malformed tool exchange
    and Unreachable when the pinned part alone exceeds the target. `digests`, when given,
    are graph.digest of each message (counting computed them already)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    if len(tokens) != len(messages):
        raise ValueError("one token count per message is needed")
    if digests is not None and len(digests) != len(messages):
        raise ValueError("one digest per message is needed")
    run = _Run(messages, tokens, fixed_tokens, target, meter, options, digests)
    original = run.total()
    seen = tuple(run.digest(m) for m in messages) if session is not None else ()
    unchanged = [i for i, d in enumerate(seen) if session and d in session.seen]

    def done(result: Result) -> Result:
        if session is not None:
            result.prefix_messages, result.prefix_tokens = run.preserved(session.sent)
        result.original_tokens = original
        result.seen = seen
        result.unchanged_messages = len(unchanged)
        result.unchanged_tokens = sum(tokens[i] for i in unchanged)
        return result

    if original <= target:
        result = run.finish(strategy, strategy,
                            f"already under target ({original} <= {target} tokens): unchanged")
        return done(result)
    smallest = run.smallest()
    if smallest > target:
        raise Unreachable(smallest, target, sum(len(s.indexes) for s in run.slots if s.pinned))

    used, reason = strategy, ""
    matched: list[Slot] = []
    gaps: list[Slot] = []
    if session is not None and strategy in ("prefix_stable", "auto"):
        matched, gaps = run.sent_prefix(session.sent)
    if strategy == "auto":
        used, reason = _choose(run, matched, options)
    if used == "truncate":
        run.drop(run.droppable(), readd=False)
        reason = reason or "oldest units dropped first"
    elif used == "selective_forget":
        run.drop(run.selective_order(run.droppable()), readd=True)
        reason = reason or (f"least important units dropped; the last user turn names "
                            f"{len(run.refs)} paths/symbols")
    elif used in ("code_aware", "incremental"):
        n = run.dedup(by_path=used == "code_aware")
        if used == "code_aware":
            run.code_rewrites()
        if not run.fits():
            run.drop(run.selective_order(run.droppable()), readd=True)
        reason = reason or (f"{n} older file copies replaced by references to the newest; "
                            "then least important units dropped" if n else
                            "no repeated file content; least important units dropped")
    elif used == "prefix_stable":
        reason = _prefix_stable(run, matched, gaps, reason)
    elif used == "summarize":
        reason = _summarize(run, summarize)
    result = done(run.finish(strategy, used, reason))
    if used == "summarize":
        result.summary = run.summary
    return result


def _choose(run: _Run, matched: list[Slot], options: Options) -> tuple[str, str]:
    prefix = sum(s.tokens for s in matched)
    if prefix >= options.warm_prefix_min_tokens:
        return "prefix_stable", (f"warm prefix of {prefix} tokens "
                                 f"({sum(len(s.indexes) for s in matched)} messages) in session")
    repeated = code.stale(run.copies(), by_path=True)
    if repeated:
        return "code_aware", f"{len(repeated)} older copies of files are repeated later"
    if run.refs:
        return "selective_forget", (f"the last user turn names {len(run.refs)} paths/symbols; "
                                    "units showing them are kept first")
    return "truncate", "no warm prefix, repeated files or references: oldest units dropped"


def _prefix_stable(run: _Run, matched: list[Slot], gaps: list[Slot], reason: str) -> str:
    """Keep the longest sent prefix that lets everything else fit and still shows (defines,
    or shows the file of) every reference of the last user turn that selective_forget would
    show: a prefix chosen for an earlier question must not crowd out what this one asks
    about. Drop what the session dropped inside it, compress selectively after it."""
    pos = {id(s): i for i, s in enumerate(run.slots)}

    def reset() -> None:
        for s in run.slots:
            s.kept = True

    def attempt(k: int) -> bool:
        """Prefix matched[:k] kept, the rest compressed; whether that is acceptable."""
        keep = matched[:k]
        last = pos[id(keep[-1])]
        for g in gaps:
            if pos[id(g)] < last:
                g.kept = False
        if run.smallest(keep) > run.target:
            return False
        rest = [s for s in run.droppable(keep) if pos[id(s)] > last]
        run.drop(run.selective_order(rest), readd=True)
        return run.fits() and needed <= run.shown_refs()

    needed: frozenset[int] = frozenset()
    if matched and run.refs:  # what selective_forget keeps shown of what the question names
        run.drop(run.selective_order(run.droppable()), readd=True)
        needed = run.shown_refs()
        reset()
    # The longest acceptable prefix, by bisection (a shorter prefix leaves more room).
    lo, hi = 0, len(matched)
    while lo < hi:
        k = (lo + hi + 1) // 2
        ok = attempt(k)
        reset()
        if ok:
            lo = k
        else:
            hi = k - 1
    if lo:
        attempt(lo)
        tokens = sum(s.tokens for s in matched[:lo])
        shorter = (f" (of {sum(s.tokens for s in matched)} sent: the rest would crowd out "
                   "what the last user turn names)" if lo < len(matched) and needed else "")
        return reason or (f"kept the {tokens}-token prefix this session sent before{shorter}; "
                          "compressed after it")
    run.drop(run.selective_order(run.droppable()), readd=True)
    if matched:
        return (reason + "; " if reason else "") + (
            "the session's sent prefix does not fit the target" + (
                " or would crowd out what the last user turn names" if needed else "")
            + ": compressed selectively")
    return reason or "no prefix sent before in this session: compressed selectively"


def _summarize(run: _Run, summarize: SummarizeFn | None) -> str:
    """Drop the least important units (as selective_forget) until a summary fits, then put
    one summary of them where the first of them was."""
    if summarize is None:
        run.drop(run.selective_order(run.droppable()), readd=True)
        return "summarisation not available: least important units dropped"
    reserve = min(run.options.summary_max_tokens, run.target // 10,
                  run.target - run.smallest())
    goal = run.target
    run.target = goal - reserve
    run.drop(run.selective_order(run.droppable()), readd=True)
    run.target = goal
    span = [s for s in run.slots if not s.kept]
    header = SUMMARY_HEADER.format(n=sum(len(s.indexes) for s in span))
    # Text tokens left once the header message is paid (2 spare for the join).
    room = run.target - run.total() - run.meter.tokens(
        Message(role=common_pb2.ROLE_USER, content=[common_pb2.ContentPart(text=header)])) - 2
    if not span or room <= 8:
        return "least important units dropped; no room left for a summary"
    span_messages = [m for s in span for m in s.messages]
    summary = summarize(span_messages, room)
    message = Message(role=common_pb2.ROLE_USER,
                      content=[common_pb2.ContentPart(text=header + summary.text)])
    slot = Slot(tuple(i for s in span for i in s.indexes), [message], run.meter.tokens(message),
                False, original_tokens=sum(s.original_tokens for s in span))
    run.summary = summary
    how = summary.model + (f"; {summary.note}" if summary.note else "")
    if not summary.text or slot.tokens > run.target - run.total():
        return f"least important units dropped; the summary did not fit the target ({how})"
    position = run.slots.index(span[0])
    run.slots.insert(position, slot)
    run.actions.append(Action("summarized", slot.indexes, slot.original_tokens, slot.tokens,
                              f"{len(span_messages)} messages summarised ({how})", slot=slot))
    for s in span:
        s.indexes = ()  # reported by the summary action, not as drops
    return (f"{len(span_messages)} least important messages replaced by a {slot.tokens}-token "
            f"summary ({how})")
