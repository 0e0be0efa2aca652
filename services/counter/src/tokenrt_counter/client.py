"""Client side of counting by reference: send a message the counter has already counted as
its 16-byte digest instead of its content (CountMessagesRequest.message_digests).

The digest is a pure function of the message (or tool): xxh3-128, canonical big-endian
bytes, of its protobuf serialisation, exactly the counter's cache key. The model is not in
the digest (a client cannot know the canonical name an alias resolves to); the counter
keeps its cache per model. Any client can compute it:

    xxhash.xxh3_128_digest(message.SerializeToString())

`ByReference` wraps a CounterService stub: it remembers which messages it has sent in full
for each model, sends them by digest afterwards, and when the counter does not know a
digest (evicted, another replica, a restart) resends those positions in full, so a caller
always gets the exact count CountMessages would give for the full request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TypeVar

import xxhash

from tokenrt.v1 import common_pb2, counter_pb2, counter_pb2_grpc

# Messages and tools smaller than this go in full: a 16-byte digest saves little on them.
MIN_BYTES = 512
# (model, digest) pairs remembered by one ByReference (about 100 bytes each).
MAX_REMEMBERED = 100_000
# After this many requests in a row for a model whose every by-reference item was unknown
# (a model counted through a provider's count-tokens API, which needs the content; many
# replicas behind one address), send that model's requests in full for PAUSE_SECONDS.
MISSES_TO_PAUSE = 3
PAUSE_SECONDS = 60.0

Item = TypeVar("Item", common_pb2.Message, common_pb2.Tool)


def message_digest(message: common_pb2.Message) -> bytes:
    """The counter's key of a chat message: xxh3-128 of its protobuf serialisation."""
    return xxhash.xxh3_128_digest(message.SerializeToString())


def tool_digest(tool: common_pb2.Tool) -> bytes:
    """The counter's key of a tool definition: xxh3-128 of its protobuf serialisation."""
    return xxhash.xxh3_128_digest(tool.SerializeToString())


class ByReference:
    """CountMessages / CountMessagesBatch that send known messages and tools by digest.

    Not thread-safe (one per event loop). The answers are the counter's answers for the
    full requests; only the bytes on the wire change."""

    def __init__(self, stub: counter_pb2_grpc.CounterServiceStub, min_bytes: int = MIN_BYTES,
                 max_remembered: int = MAX_REMEMBERED) -> None:
        self.stub = stub  # may be replaced, e.g. after a reconnect
        self._min_bytes = min_bytes
        self._max = max_remembered
        self._sent: OrderedDict[tuple[str, bytes], None] = OrderedDict()
        self._misses: dict[str, int] = {}  # requests in a row whose every reference missed
        self._paused: dict[str, float] = {}  # model -> monotonic time references resume
        self.resent = 0  # items the counter did not know and that went again in full

    def _known(self, model: str, digest: bytes) -> bool:
        key = (model, digest)
        if key in self._sent:
            self._sent.move_to_end(key)
            return True
        return False

    def _remember(self, model: str, digests: Sequence[bytes]) -> None:
        for d in digests:
            if d:
                self._sent[(model, d)] = None
                self._sent.move_to_end((model, d))
        while len(self._sent) > self._max:
            self._sent.popitem(last=False)

    def by_reference(self, request: counter_pb2.CountMessagesRequest
                     ) -> counter_pb2.CountMessagesRequest:
        """`request` with its large messages and tools digested; those sent in full before
        for this model are left empty (by reference), the others keep their content.
        `request` itself when nothing in it is large enough, or while references are
        paused for the model."""
        if self._paused and self._paused.get(request.model, 0.0) > time.monotonic():
            return request
        messages, message_digests = self._refs(request.model, request.messages)
        tools, tool_digests = self._refs(request.model, request.tools)
        if not message_digests and not tool_digests:
            return request
        out = counter_pb2.CountMessagesRequest(model=request.model, messages=messages,
                                               tools=tools, message_digests=message_digests,
                                               tool_digests=tool_digests)
        if request.HasField("sampling"):
            out.sampling.CopyFrom(request.sampling)
        return out

    def _refs(self, model: str, items: Sequence[Item]) -> tuple[list[Item], list[bytes]]:
        out: list[Item] = []
        digests: list[bytes] = []
        for item in items:
            data = item.SerializeToString()  # as message_digest / tool_digest
            if len(data) < self._min_bytes:
                out.append(item)
                digests.append(b"")
                continue
            d = xxhash.xxh3_128_digest(data)
            out.append(type(item)() if self._known(model, d) else item)
            digests.append(d)
        return out, (digests if any(digests) else [])

    def _full(self, original: counter_pb2.CountMessagesRequest,
              sent: counter_pb2.CountMessagesRequest,
              response: counter_pb2.CountMessagesResponse) -> counter_pb2.CountMessagesRequest:
        """`sent` with the positions the counter did not know filled in again."""
        again = counter_pb2.CountMessagesRequest()
        again.CopyFrom(sent)
        for i in response.unknown_messages:
            again.messages[i].CopyFrom(original.messages[i])
        for i in response.unknown_tools:
            again.tools[i].CopyFrom(original.tools[i])
        self.resent += len(response.unknown_messages) + len(response.unknown_tools)
        return again

    def _sent_in_full(self, request: counter_pb2.CountMessagesRequest) -> None:
        """Remember the digested items `request` carried with content (now counted)."""
        for items, digests in ((request.messages, request.message_digests),
                               (request.tools, request.tool_digests)):
            if digests:
                self._remember(request.model, [d for item, d in zip(items, digests, strict=True)
                                               if d and item.ByteSize()])

    @staticmethod
    def _unknown(response: counter_pb2.CountMessagesResponse) -> bool:
        return bool(response.unknown_messages or response.unknown_tools)

    def _note(self, sent: counter_pb2.CountMessagesRequest,
              response: counter_pb2.CountMessagesResponse) -> None:
        """Count the requests in a row whose every reference missed; pause after a few."""
        if not sent.message_digests and not sent.tool_digests:
            return
        refs = (sum(1 for m, d in zip(sent.messages, sent.message_digests, strict=False)
                    if d and not m.ByteSize())
                + sum(1 for t, d in zip(sent.tools, sent.tool_digests, strict=False)
                      if d and not t.ByteSize()))
        if not refs:
            return
        if len(response.unknown_messages) + len(response.unknown_tools) < refs:
            self._misses.pop(sent.model, None)
            return
        misses = self._misses[sent.model] = self._misses.get(sent.model, 0) + 1
        if misses >= MISSES_TO_PAUSE:
            self._paused[sent.model] = time.monotonic() + PAUSE_SECONDS
            self._misses.pop(sent.model, None)

    async def count_messages(self, request: counter_pb2.CountMessagesRequest,
                             rpc_timeout: float | None = None) -> counter_pb2.CountMessagesResponse:
        """CountMessages for `request` (full content), sending what the counter has seen
        by digest. `rpc_timeout` bounds the whole call, resends included. Errors are the
        counter's, as grpc.aio.AioRpcError."""
        left = _Deadline(rpc_timeout)
        sent = self.by_reference(request)
        response = await self.stub.CountMessages(sent, timeout=left())
        self._note(sent, response)
        if self._unknown(response):
            sent = self._full(request, sent, response)
            response = await self.stub.CountMessages(sent, timeout=left())
        if self._unknown(response):  # other digests evicted meanwhile: everything in full
            sent = request
            response = await self.stub.CountMessages(sent, timeout=left())
        self._sent_in_full(sent)
        return response

    async def count_messages_batch(self, requests: Sequence[counter_pb2.CountMessagesRequest],
                                   rpc_timeout: float | None = None,
                                   sent: Sequence[counter_pb2.CountMessagesRequest] | None = None,
                                   max_bytes: int = 0) -> counter_pb2.CountMessagesBatchResponse:
        """CountMessagesBatch for `requests`; the items with unknown digests go again, with
        those positions in full, in one more batch (several when `max_bytes` is given: each
        at most that many bytes, or one request alone). `rpc_timeout` bounds the whole
        call, resends included. `sent`: the requests' `by_reference` forms when the caller
        made them already (to weigh what goes on the wire)."""
        left = _Deadline(rpc_timeout)
        sent = list(sent) if sent is not None else [self.by_reference(r) for r in requests]
        batch = await self.stub.CountMessagesBatch(
            counter_pb2.CountMessagesBatchRequest(requests=sent), timeout=left())
        for s, r in zip(sent, batch.results, strict=True):
            if r.HasField("response"):
                self._note(s, r.response)
        retry = [i for i, r in enumerate(batch.results)
                 if r.HasField("response") and self._unknown(r.response)]
        if retry:
            results = list(batch.results)
            for i in retry:
                sent[i] = self._full(requests[i], sent[i], results[i].response)
            answers: list[counter_pb2.CountMessagesResult] = []
            for part in _parts([sent[i] for i in retry], max_bytes):
                again = await self.stub.CountMessagesBatch(
                    counter_pb2.CountMessagesBatchRequest(requests=part), timeout=left())
                answers += again.results
            for i, r in zip(retry, answers, strict=True):
                if r.HasField("response") and self._unknown(r.response):
                    # other digests evicted meanwhile: this one in full
                    sent[i] = requests[i]
                    r = counter_pb2.CountMessagesResult(
                        response=await self.stub.CountMessages(sent[i], timeout=left()))
                results[i] = r
            batch = counter_pb2.CountMessagesBatchResponse(results=results)
        for s, r in zip(sent, batch.results, strict=True):
            if r.HasField("response"):
                self._sent_in_full(s)
        return batch


def _parts(requests: list[counter_pb2.CountMessagesRequest], max_bytes: int
           ) -> list[list[counter_pb2.CountMessagesRequest]]:
    """`requests` in order, cut into runs of at most `max_bytes` (0: one run); a heavier
    request goes alone."""
    if max_bytes <= 0:
        return [requests]
    out: list[list[counter_pb2.CountMessagesRequest]] = []
    total = 0
    for r in requests:
        size = r.ByteSize()
        if out and total + size <= max_bytes:
            out[-1].append(r)
            total += size
        else:
            out.append([r])
            total = size
    return out


class _Deadline:
    """What is left of a timeout for the next call (None: the channel's default). A call
    made after it passed gets a tiny timeout, so gRPC answers DEADLINE_EXCEEDED."""

    def __init__(self, seconds: float | None) -> None:
        self._end = None if seconds is None else time.monotonic() + seconds

    def __call__(self) -> float | None:
        if self._end is None:
            return None
        return max(self._end - time.monotonic(), 0.001)
