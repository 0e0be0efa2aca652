"""Embedding backends of the semantic cache: the local MiniLM model (numpy forward pass over
the shipped weights) against a published figure, its precision on the labelled IDE prompts
with the guard, and both backends in a real cache process (the provider's endpoint is a
local HTTP process serving OpenAI's wire format)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from cache_fixtures import answer, lookup, request, store, tenant, unique_org
from cache_procs import Proc, clear_prefix, start_cache, stop

from tokenrt.v1 import cache_pb2, common_pb2
from tokenrt_cache import semantic
from tokenrt_cache.embeddings import cosines, embedded_scores, pack_vector
from tokenrt_cache.minilm import MiniLM
from tokenrt_testkit.stack import free_ports

PAIRS = Path(__file__).parent / "data" / "semantic_pairs.jsonl"
MISS = cache_pb2.CacheMissReason
CODE = "```python\ndef foo(xs):\n    return sorted(xs)[0]\n```"
KEY = "sk-test-5f0c1e"


@pytest.fixture(scope="module")
def model() -> MiniLM:
    return MiniLM()


def test_minilm_matches_the_published_similarity(model: MiniLM) -> None:
    """sentence-transformers' semantic-search example with all-MiniLM-L6-v2 scores these
    two sentences 0.7553; an error anywhere in the forward pass moves it."""
    a = model.embed("A man is eating food.")
    b = model.embed("A man is eating a piece of bread.")
    assert a.shape == (384,) and float(np.linalg.norm(a)) == pytest.approx(1.0, abs=1e-5)
    assert float(a @ b) == pytest.approx(0.7553, abs=0.002)
    assert float(a @ model.embed("A monkey is playing drums.")) < 0.2
    # Longer than the model's 256 word pieces: cut, not refused.
    assert len(model.tokens("word " * 1000)) == 256


def test_labelled_set_with_the_guard_has_no_false_hit(model: MiniLM) -> None:
    """Local backend at its default threshold (0.85), guard on: no false hit, and at least
    the lexical backend's recall."""
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]

    found = false_hits = 0
    for r in rows:
        ga, gb = (semantic.guard_of(r[x]).fingerprint() for x in "ab")
        if ga != gb:  # refused before any embedding (and most pairs are)
            continue
        va, vb = (model.embed(semantic.split_code(r[x])[1]) for x in "ab")
        ska, skb = semantic.sketch(r["a"]), semantic.sketch(r["b"])
        score = embedded_scores(va, ska, ga, [semantic.pack(skb, gb, pack_vector(vb))])[0]
        hit = score.guarded and score.similarity >= 0.85
        found += hit and r["same"]
        false_hits += hit and not r["same"]
    dups = sum(r["same"] for r in rows)
    assert false_hits == 0
    assert found >= 0.6 * dups


def test_cosines_skip_vectors_of_another_size() -> None:
    q = np.array([0.6, 0.8], dtype=np.float32)
    same = pack_vector(np.array([0.6, 0.8], dtype=np.float32))
    other = pack_vector(np.array([1.0, 0.0, 0.0], dtype=np.float32))
    assert cosines(q, [same, other]) == [pytest.approx(1.0, abs=1e-3), -1.0]


def _config(stub, t: common_pb2.Tenant, **fields: object  # noqa: ANN001
            ) -> cache_pb2.CacheTenantConfig:
    return stub.SetTenantConfig(cache_pb2.SetTenantConfigRequest(
        config=cache_pb2.CacheTenantConfig(tenant=t, semantic_enabled=True, **fields)),
        timeout=5).config


def _paraphrase_hit(stub, t: common_pb2.Tenant  # noqa: ANN001
                    ) -> tuple[cache_pb2.CacheableRequest, cache_pb2.LookupResponse]:
    """Store an answer, then look up a paraphrase of its question: a semantic hit."""
    original = request("Can you explain what foo() does? " + CODE)
    assert stub.Store(store(t, original, answer("foo returns the minimum")), timeout=30).stored
    hit = stub.Lookup(lookup(t, request("Please explain what foo() does.\n\n" + CODE),
                             semantic=True), timeout=30)
    assert hit.hit and hit.kind == common_pb2.CACHE_KIND_SEMANTIC
    assert hit.response == answer("foo returns the minimum")
    return original, hit


def test_local_backend_in_the_service(tmp_path: Path) -> None:
    proc = start_cache(tmp_path, TOKENRT_CACHE_EMBEDDING_BACKEND="local")
    try:
        stub, t = proc.stub(), tenant(unique_org())
        cfg = _config(stub, t)  # the service default: local
        assert cfg.embedding_backend == cache_pb2.EMBEDDING_BACKEND_LOCAL_MODEL
        assert cfg.similarity_threshold == pytest.approx(0.85)
        original, hit = _paraphrase_hit(stub, t)
        assert 0.85 <= hit.similarity < 1.0  # a cosine, not the lexical estimate (1.0)
        # Reordered words: the model rates them alike, the guard refuses.
        assert stub.Store(store(t, request("Convert celsius to fahrenheit in Python"),
                                answer("F = C * 9 / 5 + 32")), timeout=30).stored
        trap = stub.Lookup(lookup(t, request("Convert fahrenheit to celsius in Python"),
                                  semantic=True), timeout=30)
        assert not trap.hit and trap.miss_reason == MISS.Value("CACHE_MISS_REASON_GUARD_REJECTED")
        assert trap.similarity > 0.95
        # A tenant may stay lexical on the same service; its buckets are its own.
        lexical = tenant(unique_org())
        cfg = _config(stub, lexical, embedding_backend=cache_pb2.EMBEDDING_BACKEND_LEXICAL)
        assert cfg.similarity_threshold == pytest.approx(0.8)
        assert stub.Store(store(lexical, original, answer()), timeout=30).stored
        lex = stub.Lookup(lookup(lexical, request("Please explain what foo() does.\n\n" + CODE),
                                 semantic=True), timeout=30)
        assert lex.hit and lex.similarity == pytest.approx(1.0)
    finally:
        stop(proc)
        clear_prefix(proc.prefix)


def test_unavailable_backends_are_refused(cache: Proc) -> None:
    """The module's cache has no provider URL: a tenant cannot choose that backend."""
    with pytest.raises(grpc.RpcError) as err:
        _config(cache.stub(), tenant(unique_org()),
                embedding_backend=cache_pb2.EMBEDDING_BACKEND_PROVIDER)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "EMBEDDING_BACKEND_PROVIDER is not available" in (err.value.details() or "")


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The local embeddings endpoint: (base URL, its request log)."""
    port = free_ports(1)[0]
    log = tmp_path / "embeddings.log"
    server = subprocess.Popen([sys.executable, str(Path(__file__).parent / "embeddings_server.py"),
                               str(port), KEY, str(log)])
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(f"{base}/embeddings", data=b"{}"),
                                   timeout=1)
        except urllib.error.HTTPError:
            break  # it answers (401 without a key)
        except OSError:
            assert time.monotonic() < deadline, "embeddings endpoint did not start"
            time.sleep(0.1)
    yield base, log
    server.terminate()
    server.wait(10)


def test_provider_backend_over_http(tmp_path: Path, endpoint: tuple[str, Path]) -> None:
    base, log = endpoint
    key_file = tmp_path / "embedding.key"
    key_file.write_text(KEY + "\n")
    proc = start_cache(tmp_path, TOKENRT_CACHE_EMBEDDING_URL=base,
                       TOKENRT_CACHE_EMBEDDING_KEY_FILE=str(key_file),
                       TOKENRT_CACHE_EMBEDDING_TIMEOUT_MS="1000")
    try:
        stub, t = proc.stub(), tenant(unique_org())
        # The endpoint's bag-of-words vectors rate this paraphrase 0.73.
        cfg = _config(stub, t, embedding_backend=cache_pb2.EMBEDDING_BACKEND_PROVIDER,
                      embedding_model="test-embed-1", similarity_threshold=0.6)
        assert (cfg.embedding_backend, cfg.embedding_model) == (
            cache_pb2.EMBEDDING_BACKEND_PROVIDER, "test-embed-1")
        original, _hit = _paraphrase_hit(stub, t)
        sent = [json.loads(line) for line in log.read_text().splitlines()]
        # The prose is embedded (code is the guard's business), with the tenant's model.
        assert [s["model"] for s in sent] == ["test-embed-1", "test-embed-1"]
        assert sent[0]["input"] == [semantic.split_code(
            "Can you explain what foo() does? " + CODE)[1]]

        # The endpoint fails: the semantic lookup misses UNAVAILABLE, exact hits go on,
        # and a Store is still stored (for exact hits).
        Path(str(log) + ".fail").touch()
        down = stub.Lookup(lookup(t, request("Explain, please, what foo() does. " + CODE),
                                  semantic=True), timeout=10)
        assert not down.hit and down.miss_reason == MISS.Value("CACHE_MISS_REASON_UNAVAILABLE")
        assert len(down.key) == 32
        assert stub.Lookup(lookup(t, original, semantic=True), timeout=10).hit
        other = request("What does foo() return for an empty list? " + CODE)
        assert stub.Store(store(t, other, answer()), timeout=10).stored
        assert stub.Lookup(lookup(t, other), timeout=10).hit
    finally:
        stop(proc)
        clear_prefix(proc.prefix)
    text = proc.log.read_text()
    assert "cache.embedding_unavailable" in text and "HTTP 500" in text
    assert KEY not in text


def test_provider_refuses_a_wrong_key(tmp_path: Path, endpoint: tuple[str, Path]) -> None:
    base, _log = endpoint
    proc = start_cache(tmp_path, TOKENRT_CACHE_EMBEDDING_URL=base,
                       TOKENRT_CACHE_EMBEDDING_BACKEND="provider",
                       TOKENRT_CACHE_EMBEDDING_KEY_ENV="NO_SUCH_EMBEDDING_KEY")
    try:
        stub, t = proc.stub(), tenant(unique_org())
        _config(stub, t)
        down = stub.Lookup(lookup(t, request("What does foo() return?"), semantic=True),
                           timeout=10)
        assert down.miss_reason == MISS.Value("CACHE_MISS_REASON_UNAVAILABLE")
    finally:
        stop(proc)
        clear_prefix(proc.prefix)
    assert "HTTP 401" in proc.log.read_text()
