"""Calibration state in Redis, shared by restarts and replicas (the only module with I/O).

Per model: `tokenrt:counter:calib:v1:<model>:samples`, a list of the last N samples as
JSON arrays (the 8 features, then the reported tokens), and `...:<model>:fit`, the
served fit as JSON; the set `tokenrt:counter:calib:v1:models` names the models.
"""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from tokenrt_common.connect import Infra
from tokenrt_counter.estimator import Fit, Sample
from tokenrt_counter.features import Features

PREFIX = "tokenrt:counter:calib:v1:"
MODELS = PREFIX + "models"


class StoreUnavailable(Exception):
    """Redis is not connected or did not answer in time."""


class CalibrationStore:
    def __init__(self, infra: Infra, window: int, timeout: float) -> None:
        self.infra = infra  # its .redis appears once the server has started connecting
        self.window = window
        self.timeout = timeout

    def _client(self) -> aioredis.Redis:
        if self.infra.redis is None:
            raise StoreUnavailable("redis is not connected yet")
        return self.infra.redis

    async def add(self, model: str, samples: list[Sample]) -> list[Sample]:
        """Append samples to the model's window; return the whole window, oldest first."""
        client = self._client()
        key = f"{PREFIX}{model}:samples"
        rows = [json.dumps([*(int(v) for v in f.vector()), reported]) for f, reported in samples]
        try:
            async with asyncio.timeout(self.timeout):
                pipe = client.pipeline(transaction=True)
                pipe.rpush(key, *rows)
                pipe.ltrim(key, -self.window, -1)
                pipe.lrange(key, 0, -1)
                pipe.sadd(MODELS, model)
                *_, window, _ = await pipe.execute()
        except (TimeoutError, OSError, aioredis.RedisError) as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
        return [_sample(raw) for raw in window]

    async def save_fit(self, model: str, fit: Fit) -> None:
        client = self._client()
        try:
            async with asyncio.timeout(self.timeout):
                await client.set(f"{PREFIX}{model}:fit", json.dumps(fit.to_json()))
        except (TimeoutError, OSError, aioredis.RedisError) as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc

    async def load_fits(self) -> dict[str, Fit]:
        client = self._client()
        try:
            async with asyncio.timeout(self.timeout):
                models = sorted(m.decode() if isinstance(m, bytes) else m
                                for m in await client.smembers(MODELS))
                if not models:
                    return {}
                raws = await client.mget([f"{PREFIX}{m}:fit" for m in models])
        except (TimeoutError, OSError, aioredis.RedisError) as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
        fits: dict[str, Fit] = {}
        for model, raw in zip(models, raws, strict=True):
            if raw is None:
                continue
            try:
                fits[model] = Fit.from_json(json.loads(raw))
            except (ValueError, KeyError, TypeError):
                continue  # written by an incompatible version: ignore, it will be refitted
        return fits


def _sample(raw: bytes) -> Sample:
    values = json.loads(raw)
    return Features(*(int(v) for v in values[:8])), int(values[8])
