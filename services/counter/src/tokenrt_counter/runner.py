"""The counter off the event loop: small inputs inline, large unseen ones on worker threads,
and the calibration round trip to Redis. Async orchestration only; the counting is core.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from tokenrt.v1 import common_pb2
from tokenrt_counter import estimator
from tokenrt_counter.core import (
    NO_REFS,
    Accuracy,
    Budget,
    Counter,
    MessagesCount,
    NeedsWorkers,
    Refs,
    unknown,
)
from tokenrt_counter.estimator import Fit
from tokenrt_counter.provider_api import ProviderCounts
from tokenrt_counter.store import CalibrationStore, StoreUnavailable
from tokenrt_counter.tokenizers import Encoder
from tokenrt_pricing import ModelEntry

T = TypeVar("T")
FIT_REFRESH_SECONDS = 2.0
# A model is refitted at most this often by one replica (a fit reads its whole window);
# samples arriving in between are stored and picked up by the next refit.
REFIT_SECONDS = 1.0


class Runner:
    def __init__(self, counter: Counter, store: CalibrationStore, pool: ThreadPoolExecutor,
                 workers: int, offload_chars: int, log: structlog.stdlib.BoundLogger,
                 provider: ProviderCounts | None = None) -> None:
        self.counter = counter
        self._provider = provider
        self._store = store
        self._pool = pool
        self._workers = workers
        self._offload = offload_chars
        self._log = log
        self._fitted_at: dict[str, float] = {}

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def text(self, entry: ModelEntry, text: str) -> tuple[int, Accuracy]:
        """Inline when the text is small or seen before; else on the workers."""
        try:
            return self.counter.count_text(entry, text, Budget(self._offload))
        except NeedsWorkers:
            pass
        encoder = self.counter.encoder(entry)
        if encoder is None:
            return await self._run(self.counter.count_text, entry, text)
        tokens = await self._count_parallel(encoder, text)
        self.counter.remember(encoder, text, tokens)
        return tokens, Accuracy(True, encoder.source)

    async def _count_parallel(self, encoder: Encoder, text: str) -> int:
        """Hash the chunks in a worker, then count the unseen ones on every worker."""
        known, missing = await self._run(self.counter.lookup, encoder, text)
        if not missing:
            return known
        groups: list[list[tuple[Any, str]]] = [[] for _ in range(self._workers)]
        sizes = [0] * self._workers
        for item in sorted(missing, key=lambda kv: -len(kv[1])):
            i = sizes.index(min(sizes))
            groups[i].append(item)
            sizes[i] += len(item[1])
        counts = await asyncio.gather(*(self._run(self._count_group, encoder, g)
                                        for g in groups if g))
        return known + sum(counts)

    def _count_group(self, encoder: Encoder, group: list[tuple[Any, str]]) -> int:
        total = 0
        for key, piece in group:
            n = encoder.count(piece)
            self.counter.cache.put(key, n)
            total += n
        return total

    async def messages(self, entry: ModelEntry, messages: Sequence[common_pb2.Message],
                       tools: Sequence[common_pb2.Tool],
                       sampling: common_pb2.SamplingParams | None,
                       model_id: str = "", refs: Refs = NO_REFS) -> MessagesCount:
        """Counted here, or by the provider's count-tokens API when it is enabled for the
        model (the estimate answers when the provider does not). Raises core.MessageError
        for a malformed chat. `model_id` is the id the provider knows (a dated snapshot).
        Items sent by digest only (`refs`) come from the cache; a provider needs the
        content, so for a provider-counted model every such item is reported unknown."""
        provider = self._provider if self._provider and self._provider.serves(entry) else None
        if provider is not None and (refs.messages or refs.tools):
            refs.check(len(messages), len(tools))
            by_ref = refs.by_reference(messages, tools)
            if by_ref[0] or by_ref[1]:
                return unknown(*by_ref)
        result = await self._messages(entry, messages, tools, sampling, refs)
        if provider is None or result.unknown_messages or result.unknown_tools:
            return result
        exact = await provider.count(entry, model_id or entry.provider_model_id
                                           or entry.name, messages, tools, sampling)
        if exact is None:
            return result
        # The provider gives the total only: the per-message and tool figures stay the
        # estimate's, and overhead_tokens takes the difference so the parts sum to it.
        parts = sum(t for t, _ in result.messages) + result.tools_tokens
        return dataclasses.replace(result, overhead_tokens=exact - parts,
                                   accuracy=Accuracy(True, "provider"))

    async def _messages(self, entry: ModelEntry, messages: Sequence[common_pb2.Message],
                        tools: Sequence[common_pb2.Tool],
                        sampling: common_pb2.SamplingParams | None,
                        refs: Refs) -> MessagesCount:
        """Inline when little of the chat is unseen; else its large unseen texts are
        counted on the workers first."""
        try:
            return self.counter.count_messages(entry, messages, tools, sampling,
                                               Budget(self._offload), refs)
        except NeedsWorkers:
            pass
        encoder = self.counter.encoder(entry)
        if encoder is not None:
            texts = [p.text for m in messages for p in m.content if p.text]
            await asyncio.gather(*(self.text(entry, t)
                                   for t in self.counter.uncached(encoder, texts)))
        return await self._run(self.counter.count_messages, entry, messages, tools, sampling,
                               None, refs)

    async def calibrate(self, by_model: dict[str, list[estimator.Sample]],
                        tokenizer: dict[str, str]) -> dict[str, Fit]:
        """Store the samples, refit each model on its window, publish the fits.
        Raises StoreUnavailable when Redis does not answer."""
        fits: dict[str, Fit] = {}
        now = time.monotonic()
        for model, samples in by_model.items():
            window = await self._store.add(model, samples)
            current = self.counter.fits.get(model)
            if current is not None and now - self._fitted_at.get(model, 0.0) < REFIT_SECONDS:
                fits[model] = dataclasses.replace(current, samples=len(window))
                continue
            self._fitted_at[model] = now
            fit = await self._run(estimator.fit, window, tokenizer[model])
            await self._store.save_fit(model, fit)
            self.counter.fits[model] = fit
            fits[model] = fit
            self._log.info("counter.calibrated", model=model, samples=fit.samples,
                           error_bound_bp=fit.error_bound_bp, calibrated=fit.calibrated)
        return fits

    async def refresh_fits(self) -> None:
        """Keep every replica's fits current with what any replica stored."""
        while True:
            try:
                fits = await self._store.load_fits()
                self.counter.fits = {**self.counter.fits, **fits}
            except StoreUnavailable:
                pass  # keep serving the last fits; Redis health shows in readiness
            await asyncio.sleep(FIT_REFRESH_SECONDS)
