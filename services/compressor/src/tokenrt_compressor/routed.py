"""Summaries by a cheap model through the router (issue 7): cached in Redis per session
and span, with the extractive summariser standing in when the router cannot answer.

The loop: the router calls the compressor, which calls the router. A summary call asks
for compression OFF, so the router never calls the compressor for it and nothing can
recurse; it forces its model (no selection, no degrade) and bypasses the response cache
(summaries are cached per session and span here; a semantic hit there could answer with
the summary of a similar but different span, and a call without a full tenant is in the
compressor key's namespace, shared by all such callers).

Whose usage: the compressor's key is a router service key (`tokenrt keys create
--service`), so each summary call names the tenant whose conversation it summarises (the
`tokenrt-act-for-*` headers, and the session as the request's session_id): the router
applies that tenant's budgets and records the usage under it, the event's api_key_id
naming the compressor's key. A request without a full tenant (org and project) is charged
to the compressor key's own tenant. The calls also carry the tenant in tags
(`tokenrt.summary_for.org`, `.project`, `.user`, `.session`), and the caller's report
gives their usage and cost (`summary_usage`, `summary_cost_nusd`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import grpc
import structlog
import xxhash

from tokenrt.v1 import common_pb2, router_pb2, router_pb2_grpc
from tokenrt_common.context import (
    ACT_FOR_ORG_HEADER,
    ACT_FOR_PROJECT_HEADER,
    ACT_FOR_USER_HEADER,
    new_request_id,
    request_id,
)
from tokenrt_compressor import core
from tokenrt_compressor.graph import digest, message_text
from tokenrt_compressor.store import SessionStore, Unavailable
from tokenrt_compressor.summary import ROLE_NAMES, Extractive, Summary

CHARS_PER_TOKEN = 3  # over-estimates tokens for code and prose, so the cap holds
MIN_CHARS = 80  # what a cut message keeps at least (its beginning: path, signature)
COOLDOWN_SECONDS = 10.0  # after an unreachable router, stand in without trying again
DOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
CACHED_NOTE = "from the session cache"
INSTRUCTIONS = (
    "You condense an earlier part of a coding-assistant conversation that no longer fits "
    "the context window. Write a compact summary, at most {max_tokens} tokens, of what "
    "later turns may need: file paths, function and class names, decisions, errors and "
    "their fixes, open tasks. No preamble.")


class Refused(Exception):
    """The router could not, or would not, summarise; the message says why."""


def transcript(span: Sequence[common_pb2.Message], max_chars: int) -> str:
    """The span as text for the model, at most about `max_chars`: when longer, every
    message keeps the same share of its beginning (at least MIN_CHARS)."""
    texts = [f"[{ROLE_NAMES.get(m.role, 'message')}] {message_text(m)}" for m in span]
    total = sum(len(t) + 1 for t in texts)
    if total > max_chars:
        ratio = max_chars / total
        texts = [t if len(t) <= MIN_CHARS else t[:max(MIN_CHARS, int(len(t) * ratio))] + " …"
                 for t in texts]
    return "\n".join(texts)[:max_chars]


def fit(text: str, max_tokens: int, count: Callable[[str], int]) -> str:
    """`text` cut at a line or word end to at most `max_tokens` (exact count)."""
    text = text.strip()
    while text and count(text) > max_tokens:
        cut = text[:max(0, len(text) * 9 // 10)]
        end = max(cut.rfind("\n"), cut.rfind(" "))
        text = (cut[:end] if end > len(cut) // 2 else cut).rstrip()
    return text


def tenant_tags(tenant: common_pb2.Tenant, session_id: str) -> dict[str, str]:
    tags = {"tokenrt.origin": "compressor.summary", "tokenrt.summary_for.org": tenant.org_id,
            "tokenrt.summary_for.project": tenant.project_id,
            "tokenrt.summary_for.user": tenant.user_id,
            "tokenrt.summary_for.session": session_id}
    # The router takes tag values of at most 256 bytes.
    return {k: v.encode()[:256].decode("utf-8", "ignore") for k, v in tags.items() if v}


def act_for(tenant: common_pb2.Tenant) -> tuple[tuple[str, str], ...]:
    """The headers naming the tenant a summary call is made for (none without an org and
    a project: the call is then the compressor key's own)."""
    if not (tenant.org_id and tenant.project_id):
        return ()
    headers = ((ACT_FOR_ORG_HEADER, tenant.org_id), (ACT_FOR_PROJECT_HEADER, tenant.project_id))
    return headers + (((ACT_FOR_USER_HEADER, tenant.user_id),) if tenant.user_id else ())


class RouterSummarizer:
    """One summary = one router Complete with the compressor's (service) API key, made
    for the tenant whose conversation it summarises."""

    def __init__(self, stub: router_pb2_grpc.RouterServiceStub, api_key: str,
                 timeout_seconds: float, input_max_tokens: int) -> None:
        self._stub = stub
        self._auth = ("authorization", f"Bearer {api_key}")  # never logged
        self._timeout = timeout_seconds
        self._max_chars = input_max_tokens * CHARS_PER_TOKEN

    async def complete(self, span: Sequence[common_pb2.Message], max_tokens: int, model: str,
                       tenant: common_pb2.Tenant, session_id: str) -> router_pb2.Completion:
        headers = act_for(tenant)
        request = router_pb2.CompleteRequest(
            request_id=f"{request_id.get() or new_request_id()}.summary",
            # The session's budget applies too (only when acting for its tenant).
            session_id=session_id if headers else "",
            messages=[
                common_pb2.Message(role=common_pb2.ROLE_SYSTEM, content=[common_pb2.ContentPart(
                    text=INSTRUCTIONS.format(max_tokens=max_tokens))]),
                common_pb2.Message(role=common_pb2.ROLE_USER, content=[common_pb2.ContentPart(
                    text=transcript(span, self._max_chars))])],
            sampling=common_pb2.SamplingParams(max_output_tokens=max_tokens),
            preferences=router_pb2.RoutingPreferences(
                forced_model=model, allow_degrade=False,
                cache=common_pb2.CachePolicy(no_cache=True, no_store=True),
                compression=router_pb2.CompressionPolicy(
                    mode=router_pb2.COMPRESSION_MODE_OFF)),
            tags=tenant_tags(tenant, session_id))
        try:
            response = await self._stub.Complete(request, metadata=(self._auth, *headers),
                                                 timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise Refused(f"router {exc.code().name}: {(exc.details() or '')[:300]}") from exc
        except (grpc.RpcError, OSError, RuntimeError) as exc:  # e.g. a channel being closed
            raise Refused(f"router call failed: {type(exc).__name__}") from exc
        return response.completion


@dataclass
class Request:
    """What one compression's summaries depend on."""

    sid: str  # the session's store id; "" = no session, no cache
    tenant: common_pb2.Tenant
    session_id: str
    target_model: str
    options: common_pb2.CompressionOptions


class Summaries:
    """Chooses the summariser of each compression, caches per session and span, falls
    back to the extractive summariser (saying why in the summary's note)."""

    def __init__(self, store: SessionStore, router: RouterSummarizer | None,
                 default_model: str, log: structlog.stdlib.BoundLogger) -> None:
        self._store = store
        self._router = router
        self._default_model = default_model
        self._log = log
        self._down_until = 0.0
        self._down_reason = ""

    def _why_not_router(self, options: common_pb2.CompressionOptions) -> str:
        if self._router is None:
            return ("no router API key is configured for the compressor "
                    "(TOKENRT_COMPRESSOR_SUMMARY_KEY_FILE or the variable named by "
                    "TOKENRT_COMPRESSOR_SUMMARY_KEY_ENV)")
        if not options.allow_summarize:
            return "options.allow_summarize is off"
        return ""

    def for_request(self, loop: asyncio.AbstractEventLoop, count: Callable[[str], int],
                    req: Request, wait_seconds: float) -> core.SummarizeFn:
        """The summarise function core.compress calls from a worker thread; the Redis and
        router calls run on the event loop `loop`."""
        extractive = Extractive(count)
        why_not = self._why_not_router(req.options)
        model = req.options.summary_model or self._default_model
        identity = "extractive" if why_not else f"router:{model}"

        async def produce(span: Sequence[common_pb2.Message], max_tokens: int) -> Summary:
            key = xxhash.xxh3_128_hexdigest("|".join(
                [identity, req.target_model, str(max_tokens), *(digest(m) for m in span)]
            ).encode())
            if req.sid:
                try:
                    hit = await self._store.summary(req.sid, key)
                    if hit is not None:
                        return replace(hit, input_tokens=0, output_tokens=0, cost_nusd=0,
                                       cached_input_tokens=0, note=CACHED_NOTE)
                except Unavailable:
                    pass
            cache = True
            if why_not:
                summary = await asyncio.to_thread(extractive.summarize_now, span, max_tokens)
                summary = replace(summary, note=why_not)
            else:
                try:
                    summary = await self._ask(span, max_tokens, model, req, count)
                except Refused as exc:
                    self._log.warning("compressor.summary_fallback", model=model,
                                      reason=str(exc))
                    summary = await asyncio.to_thread(extractive.summarize_now, span,
                                                      max_tokens)
                    summary = replace(summary, note=f"extractive fallback: {exc}")
                    cache = False  # the next request asks the router again
            if req.sid and cache:
                try:
                    await self._store.put_summary(req.sid, key, summary)
                except Unavailable:
                    pass
            return summary

        def summarize(span: Sequence[common_pb2.Message], max_tokens: int) -> Summary:
            future = asyncio.run_coroutine_threadsafe(produce(span, max_tokens), loop)
            try:
                return future.result(wait_seconds)
            except concurrent.futures.TimeoutError:  # a safety net: every call has a timeout
                future.cancel()
                return replace(extractive.summarize_now(span, max_tokens),
                               note=f"extractive fallback: no summary within {wait_seconds:g} s")

        return summarize

    async def _ask(self, span: Sequence[common_pb2.Message], max_tokens: int, model: str,
                   req: Request, count: Callable[[str], int]) -> Summary:
        assert self._router is not None
        if time.monotonic() < self._down_until:
            raise Refused(f"{self._down_reason} (not retried for {COOLDOWN_SECONDS:g} s)")
        try:
            done = await self._router.complete(span, max_tokens, model, req.tenant,
                                               req.session_id)
        except Refused as exc:
            cause = exc.__cause__
            if isinstance(cause, grpc.aio.AioRpcError) and cause.code() in DOWN:
                self._down_until = time.monotonic() + COOLDOWN_SECONDS
                self._down_reason = str(exc)
            raise
        text = "".join(p.text for p in done.message.content if p.HasField("text"))
        # The summary model's tokenizer may differ from the target model's: cut by the
        # target's exact count.
        text = await asyncio.to_thread(fit, text, max_tokens, count)
        if not text:
            raise Refused(f"{done.served_model} answered no text")
        u = done.usage
        return Summary(text, model=done.served_model, input_tokens=u.input_tokens,
                       output_tokens=u.output_tokens, cost_nusd=done.cost_nusd,
                       cached_input_tokens=u.cached_input_tokens)
