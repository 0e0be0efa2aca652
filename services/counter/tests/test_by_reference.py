"""Messages and tools by reference (a digest instead of the content): the same answers as
the full request, unknown digests reported and resent, no way to poison the cache."""

from __future__ import annotations

import random
from pathlib import Path

import grpc
import pytest
import tiktoken
from counter_corpus import CODE_FILE, JARGON, WEATHER, WEATHER_TOOL, msg, prompt
from counter_fixtures import start_counter, stop

import tokenrt_pricing
from tokenrt.v1 import common_pb2 as c
from tokenrt.v1 import counter_pb2 as pb
from tokenrt.v1 import counter_pb2_grpc
from tokenrt_counter import chunks
from tokenrt_counter.chunks import CountCache
from tokenrt_counter.client import ByReference, message_digest, tool_digest
from tokenrt_counter.core import Counter, MessageError, MessagesCount, Refs
from tokenrt_counter.tokenizers import Tokenizers
from tokenrt_testkit.procs import ServiceProcess

CATALOG = tokenrt_pricing.load()
TOKENIZERS = Tokenizers()
U, A = c.ROLE_USER, c.ROLE_ASSISTANT
O200K = tiktoken.get_encoding("o200k_base")
EMPTY = c.Message()
MODELS = ("gpt-4o", "gpt-4", "claude-sonnet-4-5", "qwen3-235b-a22b")


def random_chat(rng: random.Random) -> list[c.Message]:
    roles = (c.ROLE_SYSTEM, U, A, c.ROLE_DEVELOPER)
    return [msg(rng.choice(roles), text, rng.choice(("", "", "bob")))
            for text in prompt(rng)]


def by_ref(messages: list[c.Message], refs: set[int]) -> tuple[list[c.Message], list[bytes]]:
    """`messages` with the positions in `refs` left empty, and every digest."""
    return ([EMPTY if i in refs else m for i, m in enumerate(messages)],
            [message_digest(m) for m in messages])


def test_the_client_digest_is_the_counter_key() -> None:
    m = msg(U, CODE_FILE)
    assert int.from_bytes(message_digest(m), "big") == chunks.digest_bytes(m.SerializeToString())
    assert len(message_digest(m)) == 16 and len(tool_digest(WEATHER_TOOL)) == 16
    assert message_digest(m) == message_digest(c.Message.FromString(m.SerializeToString()))
    assert message_digest(m) != message_digest(msg(U, CODE_FILE + " "))


@pytest.mark.parametrize("model", MODELS)
def test_by_reference_gives_the_full_answer_on_random_chats(model: str) -> None:
    """Many random chats: each counted in full by a fresh counter, then by reference
    (random positions by digest only) by a counter that saw the messages before; the
    answers are identical (counts, per message, tools, accuracy, features)."""
    rng = random.Random(model)
    entry = CATALOG.resolve(model).entry
    counter = Counter(TOKENIZERS, CountCache(1 << 24), chunk_chars=64)
    for _ in range(60):
        chat = random_chat(rng)
        tools = [WEATHER_TOOL] if rng.random() < 0.3 else []
        fresh = Counter(TOKENIZERS, CountCache(1 << 24)).count_messages(entry, chat, tools)
        assert counter.count_messages(entry, chat, tools) == fresh
        refs = {i for i in range(len(chat)) if rng.random() < 0.7}
        messages, digests = by_ref(chat, refs)
        tool_refs = Refs(digests, [tool_digest(t) for t in tools])
        sent_tools = [c.Tool() for _ in tools]
        got = counter.count_messages(entry, messages, sent_tools, None, None, tool_refs)
        assert got == fresh
        assert not got.unknown_messages and not got.unknown_tools
    if model in ("gpt-4o", "gpt-4"):  # exact: the count is tiktoken's cookbook count
        chat = [msg(U, "Hi"), msg(A, CODE_FILE)]
        counter.count_messages(entry, chat, [])
        got = counter.count_messages(entry, *by_ref(chat, {1})[:1], [], None, None,
                                     Refs(by_ref(chat, {1})[1]))
        enc = tiktoken.get_encoding(entry.tokenizer)
        assert got.total == 3 + sum(3 + len(enc.encode("user" if m.role == U else "assistant"))
                                    + len(enc.encode(m.content[0].text)) for m in chat)


def test_unknown_digests_are_listed_and_give_no_count() -> None:
    entry = CATALOG.resolve("gpt-4o").entry
    counter = Counter(TOKENIZERS, CountCache(1 << 22))
    files = [msg(U, f"# file {i}\n{CODE_FILE}") for i in range(3)]
    counter.count_messages(entry, files[:2], [WEATHER_TOOL])
    chat = [*files, msg(U, "why?")]
    messages, digests = by_ref(chat, {0, 1, 2})
    got = counter.count_messages(entry, messages, [c.Tool(), c.Tool()], None, None,
                                 Refs(digests, [tool_digest(WEATHER_TOOL),
                                                tool_digest(c.Tool(name="never"))]))
    assert (got.unknown_messages, got.unknown_tools) == ([2], [1])
    assert got.total == 0 and got.messages == []
    # The same digests for another model: the cache is per model.
    other = counter.count_messages(CATALOG.resolve("gpt-4o-mini").entry, messages, [], None,
                                   None, Refs(digests))
    assert other.unknown_messages == [0, 1, 2]
    # Evicted: a cache holding few entries forgets the files.
    small = Counter(TOKENIZERS, CountCache(4 * chunks.ENTRY_BYTES))
    small.count_messages(entry, files, [])
    small.count_messages(entry, [msg(U, f"filler {i} " * 100) for i in range(8)], [])
    assert small.count_messages(entry, messages, [], None, None,
                                Refs(digests)).unknown_messages == [0, 1, 2]


def test_a_client_cannot_poison_the_cache() -> None:
    """A digest sent with content must match it; a digest-only lookup returns only what the
    counter computed from content it saw, for that model."""
    entry = CATALOG.resolve("gpt-4o").entry
    counter = Counter(TOKENIZERS, CountCache(1 << 22))
    victim = msg(U, CODE_FILE)
    short = msg(U, "x")
    # Mallory sends short content under the victim's digest: refused.
    with pytest.raises(MessageError) as err:
        counter.count_messages(entry, [short], [], None, None, Refs([message_digest(victim)]))
    assert err.value.field == "message_digests[0]"
    with pytest.raises(MessageError) as err:
        counter.count_messages(entry, [msg(U, "a")], [c.Tool(name="t")], None, None,
                               Refs([], [tool_digest(WEATHER_TOOL)]))
    assert err.value.field == "tool_digests[0]"
    # Nothing was cached under the victim's digest: a lookup does not find it.
    assert counter.count_messages(entry, [EMPTY], [], None, None,
                                  Refs([message_digest(victim)])).unknown_messages == [0]
    want = counter.count_messages(entry, [victim], [])
    got = counter.count_messages(entry, [EMPTY], [], None, None, Refs([message_digest(victim)]))
    assert got == want and got.total > 1000


@pytest.mark.parametrize(("refs", "field"), [
    (Refs([b"\x00" * 16, b""]), "message_digests"),
    (Refs([b"\x01" * 15]), "message_digests[0]"),
    (Refs([], [b"\x01" * 17]), "tool_digests[0]"),
])
def test_malformed_digests_name_the_field(refs: Refs, field: str) -> None:
    counter = Counter(TOKENIZERS, CountCache(1 << 20))
    tools = [WEATHER_TOOL] if refs.tools else []
    with pytest.raises(MessageError) as err:
        counter.count_messages(CATALOG.resolve("gpt-4o").entry, [msg(U, "hi")], tools, None,
                               None, refs)
    assert err.value.field == field


def test_a_malformed_message_is_still_refused_when_a_digest_comes_with_it() -> None:
    bad = c.Message(role=c.ROLE_TOOL, content=[c.ContentPart(text="result")])
    with pytest.raises(MessageError) as err:
        Counter(TOKENIZERS, CountCache(1 << 20)).count_messages(
            CATALOG.resolve("gpt-4o").entry, [bad], [], None, None, Refs([message_digest(bad)]))
    assert err.value.field == "messages[0].tool_call_id"


# ---- the service and the client helper ------------------------------------------------

def channel(proc: ServiceProcess) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(proc.address, options=[
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.max_receive_message_length", 64 << 20)])


def ide_chat(files: list[str], question: str) -> list[c.Message]:
    return [msg(c.ROLE_SYSTEM, "You are a coding assistant."),
            *(msg(U, f) for f in files), msg(U, question)]


async def test_the_service_answers_by_reference_and_the_helper_resends_after_a_restart(
        counter: ServiceProcess, tmp_path: Path) -> None:
    files = [f"# file {i}\n{CODE_FILE}" for i in range(4)]
    async with channel(counter) as ch:
        stub = counter_pb2_grpc.CounterServiceStub(ch)
        helper = ByReference(stub, min_bytes=300)  # the weather tool (337 bytes) too
        for q in range(3):
            full = pb.CountMessagesRequest(model="gpt-4o", messages=ide_chat(files, f"q{q}?"),
                                           tools=[WEATHER_TOOL])
            want = await stub.CountMessages(full, timeout=10)
            sent = helper.by_reference(full)
            if q:  # the files went by digest: a few hundred bytes instead of ~100 KB
                assert sent.ByteSize() < 1000 < full.ByteSize() // 100
            assert await helper.count_messages(full, rpc_timeout=10) == want
        assert helper.resent == 0
        # Directly: a digest-only message the counter never saw is listed, with no count.
        never = msg(U, "never sent " * 100)
        got = await stub.CountMessages(pb.CountMessagesRequest(
            model="gpt-4o", messages=[EMPTY, msg(U, "hi")],
            message_digests=[message_digest(never), b""]), timeout=10)
        assert list(got.unknown_messages) == [0] and got.input_tokens == 0
        # A digest that does not match its content: INVALID_ARGUMENT naming the field.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CountMessages(pb.CountMessagesRequest(
                model="gpt-4o", messages=[msg(U, "hi")],
                message_digests=[message_digest(never)]), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "message_digests[0]" in (err.value.details() or "")
        # Batch: each item by reference, answered as CountMessages would.
        batch = [pb.CountMessagesRequest(model=m, messages=ide_chat(files, "batch?"))
                 for m in ("gpt-4o", "gpt-4", "claude-sonnet-4-5")]
        want_batch = await stub.CountMessagesBatch(pb.CountMessagesBatchRequest(
            requests=batch), timeout=10)
        assert await helper.count_messages_batch(batch, rpc_timeout=10) == want_batch
        assert await helper.count_messages_batch(batch, rpc_timeout=10) == want_batch
    # Another replica (a fresh process, empty cache): the helper resends the files in
    # full, transparently, and the counts stay exact.
    other = start_counter(tmp_path, name="replica")
    try:
        async with channel(other) as ch:
            helper.stub = counter_pb2_grpc.CounterServiceStub(ch)
            full = pb.CountMessagesRequest(model="gpt-4o", messages=ide_chat(files, "again?"),
                                           tools=[WEATHER_TOOL])
            got = await helper.count_messages(full, rpc_timeout=10)
            assert helper.resent == 5  # four files and the tool
            want = 3 + sum(3 + len(O200K.encode(role)) + len(O200K.encode(m.content[0].text))
                           for m, role in zip(full.messages,
                                              ["system", *["user"] * 5], strict=True))
            assert got.input_tokens - got.tools_tokens == want
            assert got == await helper.stub.CountMessages(full, timeout=10)
            helper.resent = 0
            batch = [pb.CountMessagesRequest(model="gpt-4", messages=ide_chat(files, "b?"))]
            # gpt-4 (cl100k) was never counted on this replica: the batch item is resent
            got_batch = await helper.count_messages_batch(batch, rpc_timeout=10)
            assert helper.resent == 4
            assert got_batch == await helper.stub.CountMessagesBatch(
                pb.CountMessagesBatchRequest(requests=batch), timeout=10)
    finally:
        stop(other)


class Recording:
    """A real counter stub that remembers the size of each batch call it makes."""

    def __init__(self, stub: counter_pb2_grpc.CounterServiceStub) -> None:
        self._stub = stub
        self.batches: list[list[int]] = []
        self.CountMessages = stub.CountMessages  # noqa: N815

    async def CountMessagesBatch(self, request: pb.CountMessagesBatchRequest,  # noqa: N802
                                 timeout: float | None = None) -> pb.CountMessagesBatchResponse:
        self.batches.append([r.ByteSize() for r in request.requests])
        return await self._stub.CountMessagesBatch(request, timeout=timeout)


async def test_a_resend_after_a_restart_is_cut_to_max_bytes(counter: ServiceProcess,
                                                            tmp_path: Path) -> None:
    """Small by-reference requests whose digests a new counter does not know come back
    as full ones: the resend goes in batches of at most `max_bytes` (each request is
    ~100 KB here, so one a batch), and the counts are the full requests' counts."""
    files = [f"# file {i}\n{CODE_FILE}" for i in range(4)]
    batch = [pb.CountMessagesRequest(model="gpt-4o", messages=ide_chat(files, f"q{i}?"))
             for i in range(3)]
    async with channel(counter) as ch:
        helper = ByReference(counter_pb2_grpc.CounterServiceStub(ch))
        want = await helper.count_messages_batch(batch, rpc_timeout=10)  # in full
    other = start_counter(tmp_path, name="cut")
    try:
        async with channel(other) as ch:
            recording = Recording(counter_pb2_grpc.CounterServiceStub(ch))
            helper.stub = recording  # type: ignore[assignment]
            size = batch[0].ByteSize()
            got = await helper.count_messages_batch(batch, rpc_timeout=10,
                                                    max_bytes=size + size // 2)
            assert got == want
            first, *resends = recording.batches
            assert len(first) == 3 and sum(first) < 3000  # by reference
            assert [len(b) for b in resends] == [1, 1, 1]
            assert all(b[0] > size // 2 for b in resends)  # the files in full again
    finally:
        stop(other)


def test_jargon_and_weather_are_unchanged_by_reference() -> None:
    """The cookbook's documented figures hold by reference too."""
    for model, chat, tools, want in (("gpt-4o", JARGON, [], None),
                                     ("gpt-4-0613", WEATHER, [WEATHER_TOOL], 105)):
        entry = CATALOG.resolve(model).entry
        counter = Counter(TOKENIZERS, CountCache(1 << 22))
        full = counter.count_messages(entry, chat, tools)
        messages, digests = by_ref(list(chat), set(range(len(chat))))
        got: MessagesCount = counter.count_messages(
            entry, messages, [c.Tool() for _ in tools], None, None,
            Refs(digests, [tool_digest(t) for t in tools]))
        assert got == full
        if want is not None:
            assert got.total == want
