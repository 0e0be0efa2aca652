"""The cache's pure core: namespaces, the canonical key, the policy, chunk replay."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrt.v1 import cache_pb2, common_pb2
from tokenrt_cache import core, replay
from tokenrt_cache.core import RequestError, Tenant

ids = st.text(min_size=1, max_size=12).filter(lambda s: all(ord(c) >= 32 for c in s))
texts = st.text(max_size=40)


def text_msg(role: int, text: str) -> common_pb2.Message:
    return common_pb2.Message(role=role, content=[common_pb2.ContentPart(text=text)])


def request(user: str = "hello", **sampling: object) -> cache_pb2.CacheableRequest:
    s = common_pb2.SamplingParams(temperature=0.0)
    for k, v in sampling.items():
        setattr(s, k, v)
    return cache_pb2.CacheableRequest(
        model="gpt-4o-mini",
        messages=[text_msg(common_pb2.ROLE_SYSTEM, "be terse"), text_msg(common_pb2.ROLE_USER, user)],
        sampling=s)


def key(req: cache_pb2.CacheableRequest, ns: str = "acme/web") -> str:
    return core.key_of(ns, core.request_digest(req))


@st.composite
def requests(draw: st.DrawFn) -> cache_pb2.CacheableRequest:
    msgs = draw(st.lists(st.tuples(st.sampled_from([1, 2, 3, 5]), texts), min_size=1, max_size=4))
    req = cache_pb2.CacheableRequest(model=draw(st.sampled_from(["gpt-4o", "claude-sonnet-4-5"])),
                                     messages=[text_msg(r, t) for r, t in msgs])
    if draw(st.booleans()):
        req.tools.add(name=draw(ids), description=draw(texts),
                      parameters_json_schema='{"type":"object","properties":{"a":{"type":"string"}}}')
    s = req.sampling
    if draw(st.booleans()):
        s.temperature = draw(st.floats(0, 2))
    if draw(st.booleans()):
        s.max_output_tokens = draw(st.integers(1, 10_000))
    if draw(st.booleans()):
        s.seed = draw(st.integers(-(2**40), 2**40))
    s.stop_sequences.extend(draw(st.lists(st.text(min_size=1, max_size=4), max_size=3)))
    return req


# Every answer-changing field, as a mutation that gives a request another answer.
def _mutations() -> list[tuple[str, object]]:
    def m(f):  # noqa: ANN001, ANN202
        return f
    return [
        ("model", m(lambda r: setattr(r, "model", r.model + "-x"))),
        ("message text", m(lambda r: r.messages[-1].content[0].MergeFrom(
            common_pb2.ContentPart(text=r.messages[-1].content[0].text + "!")))),
        ("role", m(lambda r: setattr(r.messages[-1], "role", common_pb2.ROLE_ASSISTANT
                                     if r.messages[-1].role != common_pb2.ROLE_ASSISTANT
                                     else common_pb2.ROLE_USER))),
        ("name", m(lambda r: setattr(r.messages[-1], "name", "bob"))),
        ("extra message", m(lambda r: r.messages.append(text_msg(common_pb2.ROLE_USER, "")))),
        ("image", m(lambda r: r.messages[-1].content.add().image.MergeFrom(
            common_pb2.ImagePart(url="https://x/y.png")))),
        ("tool", m(lambda r: r.tools.add(name="zz_extra_tool"))),
        ("temperature", m(lambda r: setattr(r.sampling, "temperature",
                                            r.sampling.temperature + 0.5))),
        ("top_p", m(lambda r: setattr(r.sampling, "top_p", 0.5))),
        ("top_k", m(lambda r: setattr(r.sampling, "top_k", 7))),
        ("max tokens", m(lambda r: setattr(r.sampling, "max_output_tokens",
                                           r.sampling.max_output_tokens + 1))),
        ("stop", m(lambda r: r.sampling.stop_sequences.append("\x00never-seen"))),
        ("seed", m(lambda r: setattr(r.sampling, "seed", r.sampling.seed + 1))),
        ("presence", m(lambda r: setattr(r.sampling, "presence_penalty", 0.25))),
        ("frequency", m(lambda r: setattr(r.sampling, "frequency_penalty", 0.25))),
        ("json mode", m(lambda r: setattr(r.sampling.response_format, "type",
                                          common_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT))),
        ("reasoning", m(lambda r: setattr(r.sampling, "reasoning_effort",
                                          common_pb2.REASONING_EFFORT_HIGH))),
        ("budget", m(lambda r: setattr(r.sampling, "reasoning_budget_tokens", 1024))),
        ("provider options", m(lambda r: r.sampling.provider_options.update({"logprobs": True}))),
    ]


MUTATIONS = _mutations()


@settings(max_examples=60, deadline=None)
@given(requests(), st.sampled_from(MUTATIONS))
def test_every_answer_changing_field_changes_the_key(req: cache_pb2.CacheableRequest,
                                                     mutation: tuple[str, object]) -> None:
    other = cache_pb2.CacheableRequest()
    other.CopyFrom(req)
    mutation[1](other)  # type: ignore[operator]
    assert key(other) != key(req), mutation[0]


@settings(max_examples=60, deadline=None)
@given(requests(), ids, ids, ids, ids)
def test_different_tenants_never_share_a_key(req: cache_pb2.CacheableRequest, org1: str,
                                             proj1: str, org2: str, proj2: str) -> None:
    a, b = Tenant(org1, proj1, "u"), Tenant(org2, proj2, "u")
    for per_user in (False, True):
        na, nb = core.namespace(a, per_user), core.namespace(b, per_user)
        assert (na == nb) == (a == b)
        assert (key(req, na) == key(req, nb)) == (a == b)
    # A per-user namespace never equals the shared one, and users never share.
    assert core.namespace(a, True) != core.namespace(a, False)
    assert core.namespace(Tenant(org1, proj1, "x"), True) != core.namespace(a, True)


def test_namespaces_cannot_be_forged_with_separators() -> None:
    assert core.namespace(Tenant("a/b", "c"), False) != core.namespace(Tenant("a", "b/c"), False)
    assert core.namespace(Tenant("a", "b/~c"), False) != core.namespace(Tenant("a", "b", "c"), True)
    assert "{" not in core.namespace(Tenant("{x}", "}"), True)


@settings(max_examples=60, deadline=None)
@given(requests(), st.dictionaries(st.text(max_size=5), st.integers(0, 9), min_size=2, max_size=5))
def test_irrelevant_changes_keep_the_key(req: cache_pb2.CacheableRequest,
                                         options: dict[str, int]) -> None:
    base = key(req)
    other = cache_pb2.CacheableRequest()
    other.CopyFrom(req)
    # Stop sequences are a set.
    stops = list(other.sampling.stop_sequences)
    del other.sampling.stop_sequences[:]
    other.sampling.stop_sequences.extend(list(reversed(stops)) + stops[:1])
    # Defaults spelled out: text format, auto detail, auto tool choice when tools are given.
    other.sampling.response_format.type = common_pb2.RESPONSE_FORMAT_TYPE_TEXT
    if other.tools:
        other.sampling.tool_choice.mode = common_pb2.TOOL_CHOICE_MODE_AUTO
        other.tools[0].parameters_json_schema = (
            '{ "type" : "object",\n "properties": {"a": {"type": "string"}} }')
    else:
        # Tool choice means nothing without tools.
        other.sampling.tool_choice.mode = common_pb2.TOOL_CHOICE_MODE_REQUIRED
    if other.sampling.HasField("temperature") and other.sampling.temperature == 0:
        other.sampling.temperature = -0.0
    assert key(other) == base
    # Map order of provider options.
    a, b = cache_pb2.CacheableRequest(), cache_pb2.CacheableRequest()
    a.CopyFrom(req)
    b.CopyFrom(req)
    a.sampling.provider_options.update(dict(options.items()))
    b.sampling.provider_options.update(dict(reversed(list(options.items()))))
    assert key(a) == key(b)


def test_tool_call_ids_are_renamed_consistently() -> None:
    def convo(first: str, second: str, swap: bool = False) -> cache_pb2.CacheableRequest:
        req = request("what is the weather")
        req.tools.add(name="weather", parameters_json_schema="{}")
        asst = req.messages.add(role=common_pb2.ROLE_ASSISTANT)
        asst.tool_calls.add(id=first, name="weather", arguments_json='{"city": "Paris"}')
        asst.tool_calls.add(id=second, name="weather", arguments_json='{"city":"Rome"}')
        a, b = (second, first) if swap else (first, second)
        req.messages.add(role=common_pb2.ROLE_TOOL, tool_call_id=a).content.add(text="9C")
        req.messages.add(role=common_pb2.ROLE_TOOL, tool_call_id=b).content.add(text="20C")
        return req

    assert key(convo("call_abc", "call_def")) == key(convo("call_123", "call_456"))
    # Swapping which result answers which call is a different conversation.
    assert key(convo("call_abc", "call_def")) != key(convo("call_abc", "call_def", swap=True))


def test_json_key_order_and_invalid_json_are_kept() -> None:
    a, b, c = request(), request(), request()
    a.sampling.response_format.MergeFrom(common_pb2.ResponseFormat(
        type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema_name="s",
        json_schema='{"properties": {"a": {}, "b": {}}}'))
    b.sampling.response_format.MergeFrom(common_pb2.ResponseFormat(
        type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema_name="s",
        json_schema='{"properties": {"b": {}, "a": {}}}'))
    c.sampling.response_format.MergeFrom(common_pb2.ResponseFormat(
        type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema_name="s",
        json_schema='{"properties":{"a":{},"b":{}}}'))
    assert key(a) != key(b)  # property order shapes structured output
    assert key(a) == key(c)


def test_unset_temperature_differs_from_zero() -> None:
    a = request()
    b = request()
    b.sampling.ClearField("temperature")
    assert key(a) != key(b)


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda r: setattr(r, "model", " "), "request.model"),
    (lambda r: r.ClearField("messages"), "request.messages"),
    (lambda r: setattr(r.messages[0], "role", 0), "request.messages[0].role"),
    (lambda r: setattr(r.sampling, "temperature", float("nan")), "request.sampling.temperature"),
    (lambda r: r.messages[1].content.add(), "request.messages[1].content[1]"),
    (lambda r: r.messages[1].content.add().image.MergeFrom(common_pb2.ImagePart(data=b"x")),
     "request.messages[1].content[1].image.media_type"),
])
def test_malformed_requests_name_the_field(mutate: object, field: str) -> None:
    req = request()
    mutate(req)  # type: ignore[operator]
    with pytest.raises(RequestError) as err:
        core.canonical(req)
    assert err.value.field == field


def test_tenant_validation() -> None:
    with pytest.raises(RequestError, match="org_id is required"):
        core.tenant_of(common_pb2.Tenant(project_id="p"), need_project=True)
    with pytest.raises(RequestError, match="project_id is required"):
        core.tenant_of(common_pb2.Tenant(org_id="o"), need_project=True)
    with pytest.raises(RequestError, match="control"):
        core.tenant_of(common_pb2.Tenant(org_id="o\n", project_id="p"), need_project=True)
    assert core.tenant_of(common_pb2.Tenant(org_id="o"), need_project=False) == Tenant("o")


def test_scope_prefixes() -> None:
    a = core.namespace(Tenant("acme", "web"), False)
    au = core.namespace(Tenant("acme", "web", "al"), True)
    other = core.namespace(Tenant("acme", "webshop"), False)
    assert core.under(a, Tenant("acme")) and core.under(au, Tenant("acme"))
    assert core.under(a, Tenant("acme", "web")) and core.under(au, Tenant("acme", "web"))
    assert not core.under(other, Tenant("acme", "web"))
    assert core.under(au, Tenant("acme", "web", "al"))
    assert not core.under(a, Tenant("acme", "web", "al"))
    assert not core.under(a, Tenant("acm"))
    assert core.tenant_of_namespace(au) == Tenant("acme", "web", "al")


DEFAULTS = core.Defaults(ttl_seconds=600, max_ttl_seconds=3600, max_entries=100,
                         max_entry_bytes=1000, similarity_threshold=0.9)


def test_policy_gates() -> None:
    det = common_pb2.SamplingParams(temperature=0)
    hot = common_pb2.SamplingParams(temperature=0.7)
    unset = common_pb2.SamplingParams()
    P = common_pb2.CachePolicy
    assert core.lookup_gate(P(), det) is None
    assert core.lookup_gate(P(), hot) == cache_pb2.CACHE_MISS_REASON_NOT_CACHEABLE
    assert core.lookup_gate(P(), unset) == cache_pb2.CACHE_MISS_REASON_NOT_CACHEABLE
    assert core.lookup_gate(P(force=True), hot) is None
    assert core.lookup_gate(P(no_cache=True), det) == cache_pb2.CACHE_MISS_REASON_BYPASSED

    cfg = core.effective(None, DEFAULTS)
    ok = cache_pb2.CachedResponse(finish_reason=common_pb2.FINISH_REASON_STOP)
    assert core.store_gate(P(), det, ok, 10, cfg) is None
    assert core.store_gate(P(no_store=True), det, ok, 10, cfg) == cache_pb2.CACHE_SKIP_REASON_NO_STORE
    assert core.store_gate(P(), hot, ok, 10, cfg) == cache_pb2.CACHE_SKIP_REASON_NOT_CACHEABLE
    assert core.store_gate(P(force=True), hot, ok, 10, cfg) is None
    assert core.store_gate(P(), det, ok, 1001, cfg) == cache_pb2.CACHE_SKIP_REASON_TOO_LARGE
    assert core.store_gate(P(), det, ok, 1000, cfg) is None
    for reason in (common_pb2.FINISH_REASON_ERROR, common_pb2.FINISH_REASON_CANCELLED,
                   common_pb2.FINISH_REASON_CONTENT_FILTER, common_pb2.FINISH_REASON_UNSPECIFIED):
        bad = cache_pb2.CachedResponse(finish_reason=reason)
        assert core.store_gate(P(), det, bad, 10, cfg) == cache_pb2.CACHE_SKIP_REASON_INCOMPLETE


def test_ttl_per_request_and_per_tenant() -> None:
    P = common_pb2.CachePolicy
    assert core.ttl_of(P(), core.effective(None, DEFAULTS), DEFAULTS) == 600
    tenant = core.effective(cache_pb2.CacheTenantConfig(default_ttl_seconds=60), DEFAULTS)
    assert core.ttl_of(P(), tenant, DEFAULTS) == 60
    assert core.ttl_of(P(ttl_seconds=5), tenant, DEFAULTS) == 5
    assert core.ttl_of(P(ttl_seconds=10**6), tenant, DEFAULTS) == 3600
    with pytest.raises(RequestError, match="ttl_seconds must be at least 1"):
        core.check_policy(P(ttl_seconds=0))


def test_config_checks_and_defaults() -> None:
    C = cache_pb2.CacheTenantConfig
    T = common_pb2.Tenant
    with pytest.raises(RequestError, match="user_id"):
        core.check_config(C(tenant=T(org_id="o", project_id="p", user_id="u")))
    with pytest.raises(RequestError, match="between 0 and 1"):
        core.check_config(C(tenant=T(org_id="o"), similarity_threshold=1.5))
    with pytest.raises(RequestError, match="LEXICAL"):
        core.check_config(C(tenant=T(org_id="o"),
                            embedding_backend=cache_pb2.EMBEDDING_BACKEND_PROVIDER))
    eff = core.effective(C(max_entries=5), DEFAULTS)
    assert (eff.max_entries, eff.max_entry_bytes, eff.similarity_threshold) == (5, 1000, 0.9)


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_hit_rate_in_basis_points(hits: int, misses: int) -> None:
    bp = core.hit_rate_bp(hits, misses)
    assert 0 <= bp <= 10_000
    if hits + misses:
        assert abs(bp - hits * 10_000 / (hits + misses)) <= 0.5


@given(st.lists(st.tuples(st.text(max_size=6),
                          st.lists(st.tuples(st.integers(0, 2), st.text(max_size=5)), max_size=2)),
                min_size=1, max_size=8))
def test_stream_chunks_replay_exactly(stream: list[tuple[str, list[tuple[int, str]]]]) -> None:
    deltas = []
    seen: set[int] = set()
    args = {0: "", 1: "", 2: ""}
    for text, pieces in stream:
        ps = []
        for index, piece in pieces:
            first = index not in seen
            seen.add(index)
            ps.append(replay.ToolPiece(index, f"call{index}" if first else "",
                                       f"fn{index}" if first else "", piece))
            args[index] += piece
        deltas.append(replay.Delta(text, tuple(ps)))
    n_calls = max(seen) + 1 if seen else 0
    msg = common_pb2.Message(role=common_pb2.ROLE_ASSISTANT,
                             content=[common_pb2.ContentPart(text="".join(t for t, _ in stream))])
    for i in range(n_calls):
        msg.tool_calls.add(id=f"call{i}", name=f"fn{i}", arguments_json=args[i])
    if any(i not in seen for i in range(n_calls)):
        return  # a call that never streamed a piece cannot come from a stream
    resp = cache_pb2.CachedResponse(message=msg, chunks=replay.boundaries(deltas))
    replay.check_chunks(resp)
    assert replay.deltas(resp) == deltas


def test_bad_chunks_are_rejected() -> None:
    msg = common_pb2.Message(role=common_pb2.ROLE_ASSISTANT,
                             content=[common_pb2.ContentPart(text="hello")])
    bad = cache_pb2.CachedResponse(message=msg, chunks=[cache_pb2.ChunkBoundary(text_end=9)])
    with pytest.raises(RequestError, match="text_end"):
        core.check_response(bad)
    short = cache_pb2.CachedResponse(message=msg, chunks=[cache_pb2.ChunkBoundary(text_end=3)])
    with pytest.raises(RequestError, match="must end where"):
        core.check_response(short)
    whole = cache_pb2.CachedResponse(message=msg)
    assert replay.deltas(whole) == [replay.Delta("hello", ())]


def test_spelled_out_defaults_and_json_whitespace_keep_the_key() -> None:
    def with_image(detail: int, args: str) -> cache_pb2.CacheableRequest:
        req = request()
        req.messages[1].content.add().image.MergeFrom(common_pb2.ImagePart(
            data=b"\x89PNG", media_type="image/png", detail=detail))
        asst = req.messages.add(role=common_pb2.ROLE_ASSISTANT)
        asst.tool_calls.add(id="c1", name="f", arguments_json=args)
        return req

    assert key(with_image(0, '{"a": 1}')) == key(with_image(common_pb2.IMAGE_DETAIL_AUTO,
                                                             '{ "a" :1 }'))
    assert key(with_image(0, '{"a": 1}')) != key(with_image(common_pb2.IMAGE_DETAIL_LOW,
                                                            '{"a": 1}'))
    assert key(with_image(0, '{"a": 1}')) != key(with_image(0, '{"a": 2}'))
    other_bytes = with_image(0, '{"a": 1}')
    other_bytes.messages[1].content[1].image.data = b"\x89PNH"
    assert key(other_bytes) != key(with_image(0, '{"a": 1}'))


def _every_kind_of_field() -> cache_pb2.CacheableRequest:
    req = request("what does f do?", top_p=0.5, seed=-7, max_output_tokens=64)
    req.sampling.stop_sequences.extend(["b", "a", "b"])
    req.sampling.provider_options.update({"z": 1, "a": [True, None, "x"]})
    req.messages[1].content.add().image.MergeFrom(common_pb2.ImagePart(
        url="https://example.com/é.png", detail=common_pb2.IMAGE_DETAIL_LOW, width_px=3))
    asst = req.messages.add(role=common_pb2.ROLE_ASSISTANT)
    asst.tool_calls.add(id="call_9", name="f", arguments_json='{ "x": [1, 2.5] }')
    req.messages.add(role=common_pb2.ROLE_TOOL, tool_call_id="call_9",
                     content=[common_pb2.ContentPart(text="ok")])
    req.tools.add(name="f", description="d", parameters_json_schema="not json", strict=False)
    return req


def test_keys_are_the_same_across_versions() -> None:
    # Entries stored by an earlier version must still be found: the canonical encoding
    # and the key derivation never change without a new KEY_VERSION. (Pinned values, from
    # the encoding as of 2026-11-28.)
    req = _every_kind_of_field()
    assert hashlib.sha256(core.canonical(req)).hexdigest() == (
        "602fe31da55d0606ccea2c1dc531fc27dd05a40e183b58fea1bf277b8bb3de95")
    assert core.key_of("acme/web", core.request_digest(req)) == "0ac9020c60d00aebebc15639a25d067c"
