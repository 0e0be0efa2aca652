"""The compressor's pure core: invariants as properties, and what each strategy does."""

from __future__ import annotations

import os
import random

import pytest
from compressor_chats import ASSISTANT, SYSTEM, TOOL, USER, call, ide_conversation, text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokenrt_pricing
from tokenrt.v1 import common_pb2
from tokenrt_compressor import core
from tokenrt_compressor.counting import CounterMeter
from tokenrt_compressor.graph import INSTRUCTIONS, last_user_index, message_text
from tokenrt_compressor.summary import Extractive
from tokenrt_counter.core import MessageError

Message = common_pb2.Message
WORDS = ["alpha", "parse_config", "src/app.py", "retry", "```python src/app.py\n",
         "def parse_config(x):\n    return x\n", "```\n", "the", "CacheStore", "\n\n\n", "   ",
         "# comment\n", "lib/util.ts", "value", "loadUser(", "data"]


DEFAULTS = core.Options()


def run(meter: CounterMeter, messages: list[Message], target: int, strategy: str,
        session: core.Session | None = None,
        options: core.Options = DEFAULTS) -> core.Result:
    m = meter.measure(messages, [])
    summarize = Extractive(meter.text).summarize_now
    return core.compress(messages, m.per_message, m.fixed, target, strategy, meter, options,
                         session, summarize)


@st.composite
def chats(draw: st.DrawFn) -> list[Message]:
    words = st.lists(st.sampled_from(WORDS), min_size=0, max_size=30).map(" ".join)
    out: list[Message] = []
    if draw(st.booleans()):
        out.append(text(SYSTEM, draw(words)))
    n_call = 0
    for kind in draw(st.lists(st.sampled_from(["user", "assistant", "tools", "system"]),
                              max_size=12)):
        if kind == "tools":
            k = draw(st.integers(1, 2))
            ids = [f"c{n_call + j}" for j in range(k)]
            n_call += k
            out.append(Message(role=ASSISTANT, tool_calls=[
                call(i, "read_file", {"path": draw(st.sampled_from(["src/app.py", "a.py"]))})
                for i in ids]))
            out.extend(text(TOOL, draw(words), tool_call_id=i) for i in ids)
        else:
            role = {"user": USER, "assistant": ASSISTANT, "system": SYSTEM}[kind]
            out.append(text(role, draw(words)))
    out.append(text(USER, draw(words) + " fix parse_config in src/app.py"))
    if draw(st.booleans()):
        out.append(Message(role=ASSISTANT, tool_calls=[call("last", "read_file", {"path": "x.py"})]))
        out.append(text(TOOL, draw(words), tool_call_id="last"))
    return out


def pinned_indexes(messages: list[Message]) -> list[int]:
    last = last_user_index(messages)
    return [i for i, m in enumerate(messages) if m.role in INSTRUCTIONS or i >= last]


def check_structure(messages: list[Message], out: list[Message]) -> None:
    """Pinned messages verbatim and in order; kept messages in input order; every tool call
    directly followed by all its results, no orphan result."""
    # Match from the end (the latest equal input message), so duplicates cannot mislead.
    pos = len(messages) - 1
    matched: list[int] = []
    for m in reversed(out):
        if m.role == USER and m.content and m.content[0].text.startswith("[Summary of"):
            continue
        while pos >= 0 and not (
                messages[pos] == m or (messages[pos].role == m.role
                                       and messages[pos].tool_call_id == m.tool_call_id
                                       and list(messages[pos].tool_calls) == list(m.tool_calls)
                                       and messages[pos].role not in INSTRUCTIONS)):
            pos -= 1
        assert pos >= 0, "output message not found in input order"
        matched.append(pos)
        pos -= 1
    matched.reverse()
    out = [m for m in out
           if not (m.role == USER and m.content and m.content[0].text.startswith("[Summary of"))]
    for i in pinned_indexes(messages):
        assert i in matched and out[matched.index(i)] == messages[i]
    i = 0
    while i < len(out):
        m = out[i]
        assert m.role != TOOL, "tool result without its call"
        ids = {c.id for c in m.tool_calls}
        i += 1
        while ids:
            assert out[i].role == TOOL and out[i].tool_call_id in ids
            ids.discard(out[i].tool_call_id)
            i += 1


@settings(max_examples=int(os.environ.get("COMPRESSOR_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chat=chats(), share=st.integers(1, 110), strategy=st.sampled_from(core.STRATEGIES))
def test_invariants(meter: CounterMeter, chat: list[Message], share: int, strategy: str) -> None:
    total = meter.total(chat, [])
    target = max(1, total * share // 100)
    try:
        result = run(meter, chat, target, strategy,
                     options=core.Options(True, True, summary_max_tokens=64))
    except core.Unreachable as exc:
        pinned = pinned_indexes(chat)
        assert exc.smallest > target
        assert exc.smallest == meter.total([chat[i] for i in pinned], [])
        assert run(meter, chat, exc.smallest, strategy).compressed_tokens <= exc.smallest
        return
    assert result.compressed_tokens == meter.total(result.messages, []) <= target
    assert result.original_tokens == total
    check_structure(chat, result.messages)
    again = run(meter, result.messages, target, strategy)
    assert again.messages == result.messages


def test_truncate_drops_oldest_and_reports(meter: CounterMeter) -> None:
    chat = [text(SYSTEM, "sys"), text(USER, "old question " * 50), text(ASSISTANT, "old " * 50),
            text(USER, "recent question " * 5), text(ASSISTANT, "recent answer"),
            text(USER, "now?")]
    target = meter.total([chat[0], *chat[3:]], []) + 1
    result = run(meter, chat, target, "truncate")
    assert result.messages == [chat[0], *chat[3:]]
    dropped = [a for a in result.actions if a.kind == "dropped"]
    assert [a.input_indexes for a in dropped] == [(1,), (2,)]
    assert sum(a.tokens_before for a in dropped) == result.original_tokens - result.compressed_tokens


def test_malformed_tool_pairs_are_rejected(meter: CounterMeter) -> None:
    orphan = [text(USER, "a"), text(TOOL, "result", tool_call_id="x"), text(USER, "b")]
    with pytest.raises(MessageError, match="does not directly follow"):
        run(meter, orphan, 5, "truncate")
    missing = [text(USER, "a"), Message(role=ASSISTANT, tool_calls=[call("x", "f", {})]),
               text(USER, "b")]
    with pytest.raises(MessageError, match="without a result"):
        run(meter, missing, 5, "truncate")


def test_selective_forget_keeps_what_the_question_names(meter: CounterMeter) -> None:
    rng = random.Random(7)
    chat, named = ide_conversation(rng, files=20, turns=40, lines=60, asked=4)
    total = meter.total(chat, [])
    kept = {s: run(meter, chat, total // 4, s) for s in ("truncate", "selective_forget")}
    for result in kept.values():
        assert result.compressed_tokens <= total // 4
    body = "\n".join(p.text for m in kept["selective_forget"].messages[:-1] for p in m.content)
    shown = [n for n in named if f"def {n}(" in body or f"# {n}" in body or f"{n}\n" in body
             or n in body]
    assert len(shown) == len(named)
    truncated = "\n".join(p.text for m in kept["truncate"].messages[:-1] for p in m.content)
    assert sum(n in truncated for n in named) < len(named)


def test_code_aware_collapses_repeated_files(meter: CounterMeter) -> None:
    body = "\n".join(f"def f{i}(x):\n    return x + {i}" for i in range(40))
    chat = [text(SYSTEM, "s"),
            *[m for k in range(3) for m in (
                Message(role=ASSISTANT, tool_calls=[call(f"c{k}", "read_file",
                                                         {"path": "src/app.py"})]),
                text(TOOL, body, tool_call_id=f"c{k}"))],
            text(USER, "what does f3 do?")]
    total = meter.total(chat, [])
    result = run(meter, chat, total * 2 // 3, "code_aware")
    dedup = [a for a in result.actions if a.kind == "deduplicated"]
    assert len(dedup) == 2 and not [a for a in result.actions if a.kind == "dropped"]
    assert result.messages[-2].content[0].text == body  # the newest copy is whole
    assert "identical copy omitted" in result.messages[2].content[0].text
    assert result.compressed_tokens == meter.total(result.messages, [])


def test_whitespace_and_comments_only_when_allowed(meter: CounterMeter) -> None:
    code = "\n".join(f"# comment {i}\nx_{i} =     {i}   \n\n\n" for i in range(60))
    chat = [text(USER, f"```python lib.py\n{code}\n```"), text(ASSISTANT, "ok"),
            text(USER, "and now?")]
    total = meter.total(chat, [])
    target = total * 2 // 3
    plain = run(meter, chat, target, "code_aware")
    assert [a.kind for a in plain.actions] == ["dropped"]
    allowed = run(meter, chat, target, "code_aware", options=core.Options(True, True))
    kinds = [a.kind for a in allowed.actions]
    assert "whitespace_collapsed" in kinds and "dropped" not in kinds
    assert "x_3 = 3" in allowed.messages[0].content[0].text


def test_incremental_dedups_identical_content_and_reports_unchanged(meter: CounterMeter) -> None:
    blob = "config line that repeats\n" * 40
    first = [text(SYSTEM, "s"), text(USER, "read it"),
             *[m for k in range(2) for m in (
                 Message(role=ASSISTANT, tool_calls=[call(f"c{k}", "run", {"cmd": "cat"})]),
                 text(TOOL, blob, tool_call_id=f"c{k}"))],
             text(USER, "ok?")]
    r1 = run(meter, first, 10_000, "incremental", core.Session())
    assert r1.unchanged_messages == 0
    second = [*first, text(ASSISTANT, "fine"), text(USER, "and then?")]
    session = core.Session(r1.sent, frozenset(r1.seen))
    total = meter.total(second, [])
    r2 = run(meter, second, total - 50, "incremental", session)
    assert r2.unchanged_messages == len(first)
    assert r2.unchanged_tokens == sum(meter.measure(first, []).per_message)
    assert [a.kind for a in r2.actions] == ["deduplicated"]


def shows(messages: list[common_pb2.Message], path: str) -> bool:
    return any(f"# {path}\n" in message_text(m) for m in messages)


def test_prefix_stable_keeps_what_was_sent(meter: CounterMeter) -> None:
    rng = random.Random(3)
    chat, _ = ide_conversation(rng, files=6, turns=12, lines=30, asked=2)
    total = meter.total(chat, [])
    first = run(meter, chat, total * 2 // 3, "selective_forget")
    session = core.Session(first.sent, frozenset())
    paths = [f"src/pkg{i % 7}/module_{i}.py" for i in range(6)]
    sent = next(p for p in paths if shows(first.messages, p))
    grown = [*chat, text(ASSISTANT, "an answer " * 30), text(USER, f"and {sent}?")]
    target = first.compressed_tokens + 20
    stable = run(meter, grown, target, "prefix_stable", session)
    assert stable.compressed_tokens <= target
    n = len(first.messages) - 1  # all it sent but the old last question, which is unpinned now
    assert stable.messages[:stable.prefix_messages] == first.messages[:stable.prefix_messages]
    assert stable.prefix_messages >= n // 2
    assert stable.prefix_tokens == meter.total(stable.messages[:stable.prefix_messages], []) - 3
    assert shows(stable.messages, sent)
    auto = run(meter, grown, target, "auto", session)
    assert auto.strategy_used == "prefix_stable" and "warm prefix" in auto.reason
    plain = run(meter, grown, target, "selective_forget")
    assert plain.messages[:stable.prefix_messages] != stable.messages[:stable.prefix_messages]

    # A question about a file only an early unit shows, which the session dropped: the
    # prefix stops before it (a longer one would crowd it out), and the file is shown.
    dropped = next(p for p in paths if shows(chat, p) and not shows(first.messages, p))
    asked = [*chat, text(ASSISTANT, "an answer " * 30), text(USER, f"and {dropped}?")]
    shorter = run(meter, asked, target, "prefix_stable", session)
    assert shorter.compressed_tokens <= target and shows(shorter.messages, dropped)
    assert 0 < shorter.prefix_messages < n // 2 and "crowd out" in shorter.reason
    assert shorter.messages[:shorter.prefix_messages] == first.messages[:shorter.prefix_messages]


def test_summarize_replaces_the_dropped_span(meter: CounterMeter) -> None:
    rng = random.Random(5)
    chat, _ = ide_conversation(rng, files=5, turns=10, lines=20, asked=1)
    total = meter.total(chat, [])
    result = run(meter, chat, total // 2, "summarize")
    summaries = [a for a in result.actions if a.kind == "summarized"]
    assert len(summaries) == 1
    message = result.messages[summaries[0].output_index]
    assert message.content[0].text.startswith("[Summary of")
    assert "Files shown: src/" in message.content[0].text
    assert result.compressed_tokens == meter.total(result.messages, []) <= total // 2


def test_unreachable_states_the_smallest_size(meter: CounterMeter) -> None:
    chat = [text(SYSTEM, "long rules " * 100), text(USER, "old"), text(USER, "question")]
    smallest = meter.total([chat[0], chat[2]], [])
    with pytest.raises(core.Unreachable) as exc:
        run(meter, chat, smallest - 1, "truncate")
    assert exc.value.smallest == smallest
    assert run(meter, chat, smallest, "truncate").messages == [chat[0], chat[2]]


@settings(max_examples=int(os.environ.get("COMPRESSOR_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chat=chats(), share=st.integers(1, 100), before=st.integers(100, 200),
       strategy=st.sampled_from(["prefix_stable", "auto", "incremental"]))
def test_invariants_with_a_session(meter: CounterMeter, chat: list[Message], share: int,
                                   before: int, strategy: str) -> None:
    total = meter.total(chat, [])
    try:
        earlier = run(meter, chat[:last_user_index(chat) + 1], total * before // 100,
                      "selective_forget")
    except core.Unreachable:
        return
    session = core.Session(earlier.sent, frozenset(earlier.seen))
    target = max(1, total * share // 100)
    try:
        result = run(meter, chat, target, strategy, session)
    except core.Unreachable as exc:
        assert exc.smallest > target
        return
    assert result.compressed_tokens == meter.total(result.messages, []) <= target
    check_structure(chat, result.messages)
    assert result.messages[:result.prefix_messages] == earlier.messages[:result.prefix_messages]
    assert run(meter, result.messages, target, strategy, session).messages == result.messages


@pytest.mark.parametrize("model", ["gpt-4o", "claude-haiku-4-5", "llama-3.1-8b"])
def test_tools_and_other_tokenizers_count_as_the_counter_does(meter: CounterMeter,
                                                              model: str) -> None:
    """Tool definitions count towards the target; estimated (Claude) and packaged-tokenizer
    (Llama) models compress to the counter's own totals too."""
    other = CounterMeter(meter.counter, tokenrt_pricing.load().resolve(model).entry)
    tools = [common_pb2.Tool(name="read_file", description="Read a file.",
                             parameters_json_schema='{"type": "object", "properties": '
                                                    '{"path": {"type": "string"}}}')]
    chat, _ = ide_conversation(random.Random(9), files=5, turns=12, lines=20, asked=2)
    m = other.measure(chat, tools)
    whole = other.counter.count_messages(other.entry, chat, tools)
    assert m.per_message == [t for t, _ in whole.messages] and sum(m.per_message) + m.fixed == \
        whole.total
    target = whole.total // 3
    result = core.compress(chat, m.per_message, m.fixed, target, "auto", other)
    assert result.compressed_tokens == other.total(result.messages, tools) <= target
    assert m.accuracy.exact == whole.accuracy.exact
    assert m.accuracy.bound_tokens >= whole.accuracy.bound_tokens
