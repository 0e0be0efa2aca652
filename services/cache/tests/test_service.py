"""The cache service as a real process on real Redis: exact caching, policy, isolation,
TTL, caps, concurrency, invalidation, stats, configs, streams and bad input."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from cache_fixtures import answer, lookup, request, store, tenant, unique_org
from cache_procs import Proc, start_cache, stop

from tokenrt.v1 import cache_pb2, common_pb2
from tokenrt_cache import replay

MISS = cache_pb2.CacheMissReason
SKIP = cache_pb2.CacheSkipReason


def stats_of(stub, t: common_pb2.Tenant) -> cache_pb2.TenantCacheStats:  # noqa: ANN001
    return stub.Stats(cache_pb2.StatsRequest(tenant=t), timeout=5).total


def test_miss_store_hit_with_savings(cache: Proc) -> None:
    stub, t = cache.stub(), tenant(unique_org())
    req = request()
    first = stub.Lookup(lookup(t, req), timeout=5)
    assert not first.hit and first.miss_reason == MISS.Value("CACHE_MISS_REASON_NOT_FOUND")
    assert len(first.key) == 32
    stored = stub.Store(store(t, None, answer(), key=first.key), timeout=5)
    assert stored.stored and stored.key == first.key
    hit = stub.Lookup(lookup(t, req), timeout=5)
    assert hit.hit and hit.kind == common_pb2.CACHE_KIND_EXACT and hit.key == first.key
    assert hit.response == answer()
    assert (hit.saved_tokens, hit.saved_cost_nusd) == (150, 51_000)
    assert hit.expires_at.seconds - hit.stored_at.seconds == 3600
    s = stats_of(stub, t)
    assert (s.hits, s.exact_hits, s.misses, s.stores, s.entries) == (1, 1, 1, 1, 1)
    assert (s.saved_tokens, s.saved_cost_nusd, s.hit_rate_bp) == (150, 51_000, 5000)
    assert s.stored_bytes == answer().ByteSize()


def test_policy_determinism_force_no_cache_no_store(cache: Proc) -> None:
    stub, t = cache.stub(), tenant(unique_org())
    hot = request(temperature=0.7)
    miss = stub.Lookup(lookup(t, hot), timeout=5)
    assert miss.miss_reason == MISS.Value("CACHE_MISS_REASON_NOT_CACHEABLE") and miss.key
    skipped = stub.Store(store(t, hot, answer()), timeout=5)
    assert not skipped.stored and skipped.skip_reason == SKIP.Value("CACHE_SKIP_REASON_NOT_CACHEABLE")
    assert stub.Store(store(t, hot, answer(), force=True), timeout=5).stored
    assert stub.Lookup(lookup(t, hot, force=True), timeout=5).hit
    assert not stub.Lookup(lookup(t, hot), timeout=5).hit  # not forced: not looked up

    cold = request("another question")
    assert stub.Store(store(t, cold, answer(), no_store=True),
                      timeout=5).skip_reason == SKIP.Value("CACHE_SKIP_REASON_NO_STORE")
    assert stub.Store(store(t, cold, answer()), timeout=5).stored
    bypass = stub.Lookup(lookup(t, cold, no_cache=True), timeout=5)
    assert not bypass.hit and bypass.miss_reason == MISS.Value("CACHE_MISS_REASON_BYPASSED")
    broken = answer()
    broken.finish_reason = common_pb2.FINISH_REASON_ERROR
    assert stub.Store(store(t, request("third"), broken),
                      timeout=5).skip_reason == SKIP.Value("CACHE_SKIP_REASON_INCOMPLETE")
    s = stats_of(stub, t)
    assert s.skipped_stores == 3 and s.stores == 2


def test_tenant_isolation_from_every_rpc(cache: Proc) -> None:
    stub = cache.stub()
    org = unique_org()
    a, b, other_org = tenant(org, "web"), tenant(org, "api"), tenant(unique_org(), "web")
    req = request("isolated question")
    key_a = stub.Store(store(a, req, answer("A's answer"), tags=["t"]), timeout=5).key
    # Lookup: no other project or org sees it, and their keys differ.
    for t in (b, other_org):
        other = stub.Lookup(lookup(t, req), timeout=5)
        assert not other.hit and other.key != key_a
    # Store with A's key under B's tenant writes into B's namespace only.
    assert stub.Store(store(b, None, answer("B's answer"), key=key_a), timeout=5).stored
    batch = stub.StoreBatch(cache_pb2.StoreBatchRequest(requests=[
        store(other_org, req, answer("other's")), store(b, None, answer("B2"), key=key_a)]),
        timeout=5)
    assert all(r.response.stored for r in batch.results)
    assert stub.Lookup(lookup(a, req), timeout=5).response == answer("A's answer")
    # Invalidate from B (by A's key, tag, model, all) never removes A's entry.
    for selector in ({"key": key_a}, {"tag": "t"}, {"model": "gpt-4o-mini"}, {"all": True}):
        stub.Invalidate(cache_pb2.InvalidateRequest(tenant=b, **selector), timeout=5)
        stub.Invalidate(cache_pb2.InvalidateRequest(tenant=other_org, **selector), timeout=5)
    assert stub.Lookup(lookup(a, req), timeout=5).hit
    # Stats: B's and the other org's counters know nothing of A's.
    so = stats_of(stub, other_org)
    assert so.hits == 0 and so.stores == 1 and so.entries == 0
    sb = stats_of(stub, b)
    assert sb.hits == 0 and sb.stores == 2 and sb.entries == 0
    assert stats_of(stub, a).entries == 1
    # Configs: B's change does not touch A's.
    stub.SetTenantConfig(cache_pb2.SetTenantConfigRequest(config=cache_pb2.CacheTenantConfig(
        tenant=b, per_user=True, max_entries=7)), timeout=5)
    got = stub.GetTenantConfig(cache_pb2.GetTenantConfigRequest(tenant=a), timeout=5).config
    assert not got.per_user and got.max_entries == 10000
    # Users of a per-user project never share answers; org-wide stats see every namespace.
    alice, bob = tenant(org, "api", "alice"), tenant(org, "api", "bob")
    assert stub.Store(store(alice, req, answer("alice's")), timeout=5).stored
    assert not stub.Lookup(lookup(bob, req), timeout=5).hit
    assert stub.Lookup(lookup(alice, req), timeout=5).response == answer("alice's")
    org_stats = stub.Stats(cache_pb2.StatsRequest(tenant=tenant(org, "")), timeout=5)
    assert {(s.tenant.project_id, s.tenant.user_id) for s in org_stats.tenants} >= {
        ("web", ""), ("api", ""), ("api", "alice")}
    assert stats_of(stub, alice).stores == 1


def test_ttl_expiry(cache: Proc) -> None:
    stub, t = cache.stub(), tenant(unique_org())
    req = request("short-lived")
    stored = stub.Store(store(t, req, answer(), ttl_seconds=1), timeout=5)
    assert stored.stored
    assert stub.Lookup(lookup(t, req), timeout=5).hit
    time.sleep(1.3)
    gone = stub.Lookup(lookup(t, req), timeout=5)
    assert not gone.hit and gone.miss_reason == MISS.Value("CACHE_MISS_REASON_NOT_FOUND")
    s = stats_of(stub, t)
    assert (s.entries, s.stored_bytes) == (0, 0)
    # Per-tenant default TTL.
    stub.SetTenantConfig(cache_pb2.SetTenantConfigRequest(config=cache_pb2.CacheTenantConfig(
        tenant=t, default_ttl_seconds=1)), timeout=5)
    assert stub.Store(store(t, req, answer()), timeout=5).stored
    time.sleep(1.3)
    assert not stub.Lookup(lookup(t, req), timeout=5).hit


def test_concurrent_stores_of_one_key_keep_one_entry(cache: Proc) -> None:
    stub, t = cache.stub(), tenant(unique_org())
    req = request("raced")
    answers = [answer(f"answer number {i} " + "x" * i) for i in range(40)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda a: stub.Store(store(t, req, a, tags=["race"]), timeout=10),
                                answers))
    assert all(r.stored for r in results) and len({r.key for r in results}) == 1
    hit = stub.Lookup(lookup(t, req), timeout=5)
    assert hit.hit and hit.response in answers
    s = stats_of(stub, t)
    assert s.entries == 1 and s.stores == 40
    assert s.stored_bytes == hit.response.ByteSize()  # the replaced ones were given back
    assert stub.Invalidate(cache_pb2.InvalidateRequest(tenant=t, tag="race"),
                           timeout=5).removed_entries == 1


def test_oversized_answers_are_skipped_and_logged(cache: Proc) -> None:
    stub, t = cache.stub(), tenant(unique_org())
    stub.SetTenantConfig(cache_pb2.SetTenantConfigRequest(config=cache_pb2.CacheTenantConfig(
        tenant=tenant(t.org_id, ""), max_entry_bytes=1000)), timeout=5)
    big = answer("y" * 2000)
    skipped = stub.Store(store(t, request("big"), big), timeout=5)
    assert not skipped.stored and skipped.skip_reason == SKIP.Value("CACHE_SKIP_REASON_TOO_LARGE")
    assert not stub.Lookup(lookup(t, request("big")), timeout=5).hit
    assert stub.Store(store(t, request("small"), answer("z" * 100)), timeout=5).stored
    assert stats_of(stub, t).skipped_stores == 1
    deadline = time.monotonic() + 5
    while '"cache.store_skipped"' not in cache.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(x for x in cache.log.read_text().splitlines() if "cache.store_skipped" in x)
    assert "CACHE_SKIP_REASON_TOO_LARGE" in line and '"limit": 1000' in line


def test_per_tenant_cap_evicts_the_oldest(cache: Proc) -> None:
    stub, t = cache.stub(), tenant(unique_org())
    stub.SetTenantConfig(cache_pb2.SetTenantConfigRequest(config=cache_pb2.CacheTenantConfig(
        tenant=t, max_entries=3)), timeout=5)
    for i in range(5):
        assert stub.Store(store(t, request(f"question {i}"), answer(str(i))), timeout=5).stored
    hits = [stub.Lookup(lookup(t, request(f"question {i}")), timeout=5).hit for i in range(5)]
    assert hits == [False, False, True, True, True]
    assert stats_of(stub, t).entries == 3
    # Another tenant's entries are not counted against this cap.
    other = tenant(unique_org())
    assert stub.Store(store(other, request("question 9"), answer()), timeout=5).stored
    assert stub.Lookup(lookup(t, request("question 4")), timeout=5).hit


def test_invalidate_by_key_tag_model_and_all(cache: Proc) -> None:
    stub, t = cache.stub(), tenant(unique_org())
    reqs = {name: request(name, model=model) for name, model in
            (("k", "gpt-4o-mini"), ("tagged", "gpt-4o-mini"), ("m", "claude-sonnet-4-5"),
             ("rest", "gpt-4o-mini"))}
    keys = {n: stub.Store(store(t, r, answer(), tags=["docs"] if n == "tagged" else []),
                          timeout=5).key for n, r in reqs.items()}

    def inv(**sel: object) -> int:
        return stub.Invalidate(cache_pb2.InvalidateRequest(tenant=t, **sel),
                               timeout=5).removed_entries

    assert inv(key=keys["k"]) == 1 and inv(key=keys["k"]) == 0
    assert inv(tag="docs") == 1
    assert inv(model="claude-sonnet-4-5") == 1
    assert stub.Lookup(lookup(t, reqs["rest"]), timeout=5).hit
    assert inv(all=True) == 1
    assert not any(stub.Lookup(lookup(t, r), timeout=5).hit for r in reqs.values())
    assert stats_of(stub, t).entries == 0


def test_stats_survive_a_restart_and_replicas_agree(tmp_path: Path, cache: Proc) -> None:
    t = tenant(unique_org())
    stub = cache.stub()
    stub.Store(store(t, request(), answer()), timeout=5)
    stub.Lookup(lookup(t, request()), timeout=5)
    second = start_cache(tmp_path, prefix=cache.prefix)
    try:
        before = stats_of(stub, t)
        assert stats_of(second.stub(), t) == before
        assert second.stub().Lookup(lookup(t, request()), timeout=5).hit  # shared entries
        # The other replica writes its counters within TOKENRT_CACHE_STATS_FLUSH_MS (200).
        deadline = time.monotonic() + 5
        while stats_of(stub, t).hits != before.hits + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats_of(stub, t).hits == before.hits + 1
    finally:
        stop(second)
    third = start_cache(tmp_path, prefix=cache.prefix)  # a restart keeps them
    try:
        assert stats_of(third.stub(), t).hits == before.hits + 1
    finally:
        stop(third)


def test_streamed_answers_replay_with_their_chunks(cache: Proc) -> None:
    stub, t = cache.stub(), tenant(unique_org())
    stream = [replay.Delta("Hel"), replay.Delta("lo, "),
              replay.Delta("", (replay.ToolPiece(0, "call_1", "lookup", '{"q":'),)),
              replay.Delta("world", (replay.ToolPiece(0, "", "", '"x"}'),))]
    resp = answer("Hello, world")
    resp.message.tool_calls.add(id="call_1", name="lookup", arguments_json='{"q":"x"}')
    resp.chunks.extend(replay.boundaries(stream))
    assert stub.Store(store(t, request("stream me"), resp), timeout=5).stored
    hit = stub.Lookup(lookup(t, request("stream me")), timeout=5)
    assert replay.deltas(hit.response) == stream


def test_store_batch_items_succeed_or_fail_alone(cache: Proc) -> None:
    stub, t = cache.stub(), tenant(unique_org())
    items = [store(t, request("one"), answer()), store(t, None, answer(), key="not-a-key"),
             store(t, request("two"), answer(), no_store=True),
             store(t, request("three", model=""), answer())]
    results = stub.StoreBatch(cache_pb2.StoreBatchRequest(requests=items), timeout=5).results
    assert results[0].response.stored
    assert results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert results[1].error.detail.field == "requests[1].key"
    assert results[2].response.skip_reason == SKIP.Value("CACHE_SKIP_REASON_NO_STORE")
    assert results[3].error.detail.field == "requests[3].request.model"
    assert stub.Lookup(lookup(t, request("one")), timeout=5).hit
    many = [store(t, request(f"q{i}"), answer()) for i in range(300)]
    done = stub.StoreBatch(cache_pb2.StoreBatchRequest(requests=many), timeout=30).results
    assert all(r.response.stored for r in done) and stats_of(stub, t).entries == 301
    with pytest.raises(grpc.RpcError) as err:
        stub.StoreBatch(cache_pb2.StoreBatchRequest(requests=[many[0]] * 1001), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 1000" in (
        err.value.details() or "")


def test_lookup_batch_answers_each_as_lookup_would(cache: Proc) -> None:
    stub = cache.stub()
    t, other = tenant(unique_org()), tenant(unique_org())
    assert stub.Store(store(t, request("kept"), answer("kept answer")), timeout=5).stored
    items = [lookup(t, request("kept")), lookup(t, request("never stored")),
             cache_pb2.LookupRequest(request=request("kept")),  # no tenant
             lookup(other, request("kept"))]
    results = stub.LookupBatch(cache_pb2.LookupBatchRequest(requests=items), timeout=5).results
    assert [r.WhichOneof("result") for r in results] == ["response", "response", "error",
                                                        "response"]
    assert results[0].response == stub.Lookup(items[0], timeout=5)
    assert results[0].response.hit and results[0].response.response == answer("kept answer")
    assert not results[1].response.hit and results[1].response.key
    assert results[2].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert results[2].error.detail.field == "requests[2].tenant.org_id"
    assert not results[3].response.hit  # another tenant never shares the entry
    with pytest.raises(grpc.RpcError) as err:
        stub.LookupBatch(cache_pb2.LookupBatchRequest(requests=[items[0]] * 1001), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(("call", "message", "field"), [
    ("Lookup", cache_pb2.LookupRequest(request=request()), "tenant.org_id"),
    ("Lookup", cache_pb2.LookupRequest(tenant=tenant(project=""), request=request()),
     "tenant.project_id"),
    ("Lookup", cache_pb2.LookupRequest(tenant=tenant()), "request.model"),
    ("Lookup", lookup(tenant(), request(), ttl_seconds=0), "policy.ttl_seconds"),
    ("Store", store(tenant(), None, answer()), "key"),
    ("Store", store(tenant(), request(), cache_pb2.CachedResponse(cost_nusd=-1)),
     "response.cost_nusd"),
    ("Invalidate", cache_pb2.InvalidateRequest(tenant=tenant()), "selector"),
    ("Invalidate", cache_pb2.InvalidateRequest(tenant=tenant(), key="x"), "key"),
    ("SetTenantConfig", cache_pb2.SetTenantConfigRequest(config=cache_pb2.CacheTenantConfig(
        tenant=tenant(), similarity_threshold=2)), "config.similarity_threshold"),
    ("GetTenantConfig", cache_pb2.GetTenantConfigRequest(), "tenant.org_id"),
])
def test_bad_input_is_invalid_argument_naming_the_field(cache: Proc, call: str, message: object,
                                                        field: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        getattr(cache.stub(), call)(message, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = dict(err.value.trailing_metadata())["tokenrt-error-detail-bin"]
    assert common_pb2.ErrorDetail.FromString(detail).field == field
    assert err.value.details()


def test_semantic_hits_only_past_the_threshold_and_the_guard(cache: Proc) -> None:
    stub, t = cache.stub(), tenant(unique_org())
    code = "```python\ndef foo(xs):\n    return sorted(xs)[0]\n```"
    original = request("Can you explain what foo() does? " + code)
    paraphrase = request("Please explain what foo() does.\n\n" + code)
    # Not opted in: no semantic hit even when the request asks for one.
    assert stub.Store(store(t, original, answer("foo returns the minimum")), timeout=5).stored
    off = stub.Lookup(lookup(t, paraphrase, semantic=True), timeout=5)
    assert not off.hit and off.miss_reason == MISS.Value("CACHE_MISS_REASON_NOT_FOUND")

    config = stub.SetTenantConfig(cache_pb2.SetTenantConfigRequest(
        config=cache_pb2.CacheTenantConfig(tenant=t, semantic_enabled=True)), timeout=5).config
    assert config.semantic_enabled and config.similarity_threshold == pytest.approx(0.8)
    assert stub.Store(store(t, original, answer("foo returns the minimum")), timeout=5).stored
    hit = stub.Lookup(lookup(t, paraphrase, semantic=True), timeout=5)
    assert hit.hit and hit.kind == common_pb2.CACHE_KIND_SEMANTIC and hit.similarity >= 0.8
    assert hit.response == answer("foo returns the minimum") and hit.saved_tokens == 150
    assert hit.key != stub.Lookup(lookup(t, original), timeout=5).key
    # The request must ask for it too.
    assert not stub.Lookup(lookup(t, paraphrase), timeout=5).hit

    traps = {
        "renamed function": request("Please explain what bar() does.\n\n" +
                                    code.replace("foo", "bar")),
        "changed number": request("Can you explain what foo() does? " +
                                  code.replace("[0]", "[1]")),
        "changed path": request("Can you explain what foo() in src/a.py does? " + code),
    }
    rejected = (MISS.Value("CACHE_MISS_REASON_GUARD_REJECTED"),
                MISS.Value("CACHE_MISS_REASON_BELOW_THRESHOLD"))
    for name, trap in traps.items():
        miss = stub.Lookup(lookup(t, trap, semantic=True), timeout=5)
        assert not miss.hit and miss.miss_reason in rejected, name
    # Same prose, different code: as similar as can be, and still refused by the guard.
    guarded = stub.Lookup(lookup(t, traps["changed number"], semantic=True), timeout=5)
    assert guarded.miss_reason == rejected[0] and guarded.similarity == pytest.approx(1.0)
    for name, other in {"system prompt": request("Please explain what foo() does.\n\n" + code,
                                                 system="You are a pirate."),
                        "model": request("Please explain what foo() does.\n\n" + code,
                                         model="gpt-4o")}.items():
        miss = stub.Lookup(lookup(t, other, semantic=True), timeout=5)
        assert not miss.hit and miss.miss_reason == MISS.Value("CACHE_MISS_REASON_NOT_FOUND"), name
    far = stub.Lookup(lookup(t, request("How do I center a div? " + code), semantic=True),
                      timeout=5)
    assert not far.hit and far.miss_reason == MISS.Value("CACHE_MISS_REASON_BELOW_THRESHOLD")
    s = stats_of(stub, t)
    assert s.semantic_hits == 1 and s.hits == s.exact_hits + s.semantic_hits
    # Another tenant with the same bucket content never sees it.
    other = tenant(unique_org())
    stub.SetTenantConfig(cache_pb2.SetTenantConfigRequest(
        config=cache_pb2.CacheTenantConfig(tenant=other, semantic_enabled=True)), timeout=5)
    assert not stub.Lookup(lookup(other, paraphrase, semantic=True), timeout=5).hit


def test_prometheus_counts_lookups_and_stores_by_outcome(cache: Proc) -> None:
    import urllib.request

    port = cache.env["TOKENRT_CACHE_METRICS_PORT"]

    def count(name: str, outcome: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        for line in text.decode().splitlines():
            if line.startswith(f'{name}_total{{outcome="{outcome}"}}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = (count("tokenrt_cache_lookups", "hit_exact"),
              count("tokenrt_cache_lookups", "not_cacheable"),
              count("tokenrt_cache_stores", "stored"))
    stub, t = cache.stub(), tenant(unique_org())
    stub.Store(store(t, request("metered"), answer()), timeout=5)
    stub.Lookup(lookup(t, request("metered")), timeout=5)
    stub.Lookup(lookup(t, request("metered", temperature=None)), timeout=5)
    after = (count("tokenrt_cache_lookups", "hit_exact"),
             count("tokenrt_cache_lookups", "not_cacheable"),
             count("tokenrt_cache_stores", "stored"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
