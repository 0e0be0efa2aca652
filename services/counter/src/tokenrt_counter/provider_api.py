"""Exact prompt counts from the providers' count-tokens endpoints, for models without a
public tokenizer (Claude, Gemini), when a key is configured and the provider is enabled
(TOKENRT_COUNTER_PROVIDER_COUNT).

* Anthropic: `POST {base}/messages/count_tokens` with the Messages body minus max_tokens
  and sampling (model, system, messages, tools, tool_choice), headers `x-api-key` and
  `anthropic-version`; answer `{"input_tokens": N}`.
* Gemini: `POST {base}/models/{model}:countTokens` with `{"generateContentRequest":
  {"model": "models/{model}", contents, systemInstruction, tools, toolConfig}}`, header
  `x-goog-api-key`; answer `{"totalTokens": N, ...}`.

The bodies are the prompt the router sends (tokenrt_common.provider_wire). Answers are
cached by content (the request's messages, tools, tool choice and model id). A provider
that is down, slow (past the timeout), refuses (4xx) or answers nonsense gives None, and
the caller answers with the calibrated estimate; after a failure that is not the
request's own fault the provider is left alone for COOL_DOWN_SECONDS, so a dead provider
costs the timeout once, not on every request. Keys travel in headers only and are never
logged: failures are logged by provider, model, HTTP status and exception type.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
import xxhash

from tokenrt.v1 import common_pb2
from tokenrt_common import provider_wire as wire
from tokenrt_common.secrets import Secret, env_names, load_key
from tokenrt_common.settings import Settings
from tokenrt_counter.chunks import CountCache
from tokenrt_pricing import ModelEntry

COOL_DOWN_SECONDS = 30.0
# Statuses that mean this request cannot be counted, not that the provider is unwell.
REQUEST_FAULTS = frozenset({400, 404, 413, 422})

Body = Callable[[str, Sequence[common_pb2.Message], Sequence[common_pb2.Tool],
                 common_pb2.SamplingParams], dict[str, Any]]


class CountFailed(Exception):
    """A provider count that did not give a number. `cool` when the provider (not the
    request) is at fault."""

    def __init__(self, reason: str, cool: bool, status: int = 0) -> None:
        super().__init__(reason)
        self.cool = cool
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    """One provider's count-tokens endpoint."""

    provider: str  # the catalog's protocol name: "anthropic" or "gemini"
    base_url: str
    key: Secret
    version: str = ""  # anthropic-version

    def url(self, model_id: str) -> str:
        if self.provider == "anthropic":
            return f"{self.base_url}/messages/count_tokens"
        return f"{self.base_url}/models/{model_id.removeprefix('models/')}:countTokens"

    def headers(self) -> dict[str, str]:
        if self.provider == "anthropic":
            return {"x-api-key": self.key.reveal(), "anthropic-version": self.version}
        return {"x-goog-api-key": self.key.reveal()}

    def body(self, model_id: str, messages: Sequence[common_pb2.Message],
             tools: Sequence[common_pb2.Tool],
             sampling: common_pb2.SamplingParams) -> dict[str, Any]:
        """Raises wire.WireError (or ValueError for a tool schema that is not JSON)."""
        if self.provider == "anthropic":
            return wire.anthropic_prompt(model_id, messages, tools, sampling)
        model = model_id.removeprefix("models/")
        return {"generateContentRequest": {"model": f"models/{model}",
                                           **wire.gemini_prompt(messages, tools, sampling)}}

    def tokens(self, payload: Any) -> int:
        field = "input_tokens" if self.provider == "anthropic" else "totalTokens"
        value = payload.get(field) if isinstance(payload, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CountFailed(f"the answer has no {field}", cool=True)
        return value


def endpoints(s: Settings, env: Mapping[str, str],
              log: structlog.stdlib.BoundLogger) -> dict[str, Endpoint]:
    """The enabled providers that have a key (a missing or unreadable key is logged by
    the setting's name and skipped: the estimate answers for that provider)."""
    wanted = {p.strip() for p in s.counter_provider_count.split(",") if p.strip()}
    sources = {
        "anthropic": (s.provider_anthropic_base_url, s.provider_anthropic_key_env,
                      s.provider_anthropic_key_file, "TOKENRT_PROVIDER_ANTHROPIC_KEY_FILE"),
        "gemini": (s.provider_gemini_base_url, s.provider_gemini_key_env,
                   s.provider_gemini_key_file, "TOKENRT_PROVIDER_GEMINI_KEY_FILE"),
    }
    out: dict[str, Endpoint] = {}
    for provider in sorted(wanted):
        base, key_env, key_file, setting = sources[provider]
        key, why = load_key(env_names(key_env), key_file, env, setting)
        if key is None:
            log.warning("counter.provider_count_disabled", provider=provider, reason=why)
            continue
        out[provider] = Endpoint(provider, base.rstrip("/"), key,
                                 s.provider_anthropic_version)
        log.info("counter.provider_count_enabled", provider=provider, key_source=key.source)
    return out


class ProviderCounts:
    """Counts chats through the enabled providers' count-tokens endpoints."""

    def __init__(self, endpoints: Mapping[str, Endpoint], cache: CountCache,
                 timeout_seconds: float, log: structlog.stdlib.BoundLogger) -> None:
        self._endpoints = dict(endpoints)
        self._cache = cache
        self._timeout = timeout_seconds
        self._log = log
        self._session: aiohttp.ClientSession | None = None
        self._cool_until: dict[str, float] = {}
        # provider -> outcome ("ok", "cached", "failed", "cooling") -> count, for metrics.
        self.outcomes: dict[tuple[str, str], int] = {}

    def serves(self, entry: ModelEntry) -> bool:
        return entry.provider in self._endpoints

    def _note(self, provider: str, outcome: str) -> None:
        self.outcomes[(provider, outcome)] = self.outcomes.get((provider, outcome), 0) + 1

    async def count(self, entry: ModelEntry, model_id: str,
                    messages: Sequence[common_pb2.Message], tools: Sequence[common_pb2.Tool],
                    sampling: common_pb2.SamplingParams | None) -> int | None:
        """The provider's exact prompt count, or None: then the caller estimates."""
        endpoint = self._endpoints.get(entry.provider)
        if endpoint is None:
            return None
        sampling = sampling if sampling is not None else common_pb2.SamplingParams()
        key = ("provider-count", endpoint.provider, model_id, _digest(messages, tools, sampling))
        hit = self._cache.get(key)
        if hit is not None:
            self._note(endpoint.provider, "cached")
            return hit  # type: ignore[return-value]
        if time.monotonic() < self._cool_until.get(endpoint.provider, 0.0):
            self._note(endpoint.provider, "cooling")
            return None
        try:
            async with asyncio.timeout(self._timeout):
                tokens = await self._post(endpoint, model_id, messages, tools, sampling)
        except (CountFailed, TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            # A ValueError: this chat cannot be put in the provider's format (its fault).
            cool = exc.cool if isinstance(exc, CountFailed) else not isinstance(exc, ValueError)
            if cool:
                self._cool_until[endpoint.provider] = time.monotonic() + COOL_DOWN_SECONDS
            self._note(endpoint.provider, "failed")
            self._log.warning("counter.provider_count_failed", provider=endpoint.provider,
                              model=model_id, error=type(exc).__name__,
                              status=getattr(exc, "status", 0),
                              cool_down_s=COOL_DOWN_SECONDS if cool else 0)
            return None
        self._cache.put(key, tokens)
        self._note(endpoint.provider, "ok")
        return tokens

    async def _post(self, endpoint: Endpoint, model_id: str,
                    messages: Sequence[common_pb2.Message], tools: Sequence[common_pb2.Tool],
                    sampling: common_pb2.SamplingParams) -> int:
        body = endpoint.body(model_id, messages, tools, sampling)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(endpoint.url(model_id), json=body,
                                      headers=endpoint.headers()) as resp:
            if resp.status != 200:
                await resp.read()  # drained, never logged (an error may echo the key)
                raise CountFailed(f"HTTP {resp.status}", resp.status not in REQUEST_FAULTS,
                                  resp.status)
            try:
                payload = json.loads(await resp.read())
            except ValueError:
                raise CountFailed("the answer is not JSON", cool=True, status=200) from None
        return endpoint.tokens(payload)

    async def close(self) -> None:
        """Closes the HTTP session (at shutdown)."""
        if self._session is not None:
            await self._session.close()


def _digest(messages: Sequence[common_pb2.Message], tools: Sequence[common_pb2.Tool],
            sampling: common_pb2.SamplingParams) -> int:
    """The content key of a prompt: every message and tool, and the tool choice."""
    h = xxhash.xxh3_128()
    for m in messages:
        data = m.SerializeToString()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    h.update(b"\x00tools")
    for t in tools:
        data = t.SerializeToString()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    h.update(b"\x00choice")
    h.update(sampling.tool_choice.SerializeToString())
    h.update(b"\x01" if sampling.HasField("parallel_tool_calls")
             and not sampling.parallel_tool_calls else b"\x00")
    return h.intdigest()
