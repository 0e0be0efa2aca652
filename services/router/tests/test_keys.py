"""API keys: created by an admin, stored hashed in Postgres, revoked on every replica within
seconds, limited failed attempts per peer; real router processes on the session stack."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
import uuid

import asyncpg
import grpc
import pytest
import structlog
from aiohttp import ClientSession

from tokenrt.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    common_pb2,
    events_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    router_pb2,
)
from tokenrt_common.context import (
    ACT_FOR_ORG_HEADER,
    ACT_FOR_PROJECT_HEADER,
    ACT_FOR_USER_HEADER,
)
from tokenrt_common.settings import load_settings
from tokenrt_router.cli import register
from tokenrt_router.keys import (
    FailureGuard,
    KeyConfigError,
    KeyMap,
    Keys,
    KeyStore,
    peer_host,
)
from tokenrt_router.refusal import Refusal
from tokenrt_testkit.waits import settled_limit

from .conftest import (
    ADMIN_KEY,
    RouterProc,
    assert_no_secrets,
    auth,
    create_key,
    launch_router,
    list_models,
)

T = common_pb2
# -- pure parts ---------------------------------------------------------------------


def test_failure_guard_blocks_after_n_failures_then_forgives() -> None:
    now = [0.0]
    g = FailureGuard(3, window_s=60, block_s=10, clock=lambda: now[0])
    g.failed("1.2.3.4")
    now[0] = 30
    g.failed("1.2.3.4")
    assert g.blocked_for("1.2.3.4") == 0
    now[0] = 61  # the first failure left the window
    g.failed("1.2.3.4")
    assert g.blocked_for("1.2.3.4") == 0
    g.failed("1.2.3.4")
    assert g.blocked_for("1.2.3.4") == 10 and g.blocked_for("5.6.7.8") == 0
    now[0] = 71.5
    assert g.blocked_for("1.2.3.4") == 0


def test_peer_host_strips_ports_from_grpc_peers() -> None:
    assert peer_host("ipv4:127.0.0.1:51234") == "127.0.0.1"
    assert peer_host("ipv6:[::1]:51234") == "::1"
    assert peer_host("ipv6:%5B::1%5D:51234") == "::1"
    assert peer_host("10.0.0.7") == "10.0.0.7"


def test_static_service_keys_from_the_environment_and_the_keys_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(json.dumps([{"key": "k-file", "org": "o", "project": "p",
                                      "service": True}]))
    env = {"TOKENRT_ROUTER_KEYS": "k-svc=o/p//service;k-user=o/p/u/service;k-plain=o/p/u",
           "TOKENRT_ROUTER_KEYS_FILE": str(keys_file)}
    keys = KeyMap.from_settings(load_settings(env))
    found = {k: keys.authenticate(f"Bearer {k}") for k in ("k-svc", "k-user", "k-plain", "k-file")}
    assert {k: (c.service, c.user_id) for k, c in found.items() if c} == {
        "k-svc": (True, ""), "k-user": (True, "u"), "k-plain": (False, "u"), "k-file": (True, "")}
    acting = found["k-svc"].act_for("t-org", "t-proj", "ann")  # type: ignore[union-attr]
    assert (acting.org_id, acting.project_id, acting.user_id) == ("t-org", "t-proj", "ann")
    assert acting.api_key_id == found["k-svc"].api_key_id  # type: ignore[union-attr]
    assert not (acting.service or acting.admin or acting.bootstrap)
    with pytest.raises(KeyConfigError):
        KeyMap.from_settings(load_settings({"TOKENRT_ROUTER_KEYS": "k=o/p/u/admin"}))


# -- on real processes ----------------------------------------------------------------


async def test_admin_creates_a_key_stored_only_as_its_hash(keys_router, stack) -> None:  # type: ignore[no-untyped-def]
    org = "h2-" + uuid.uuid4().hex[:8]
    resp = await create_key(keys_router, org, user="ada")
    key, secret = resp.api_key, resp.secret
    assert secret.startswith("trk_") and len(secret) > 40
    assert key.tenant.org_id == org and key.tenant.user_id == "ada" and not key.admin
    assert key.key_prefix == secret[:8] and key.created_at.seconds > 0
    assert not key.HasField("revoked_at")
    assert await list_models(keys_router, secret) == grpc.StatusCode.OK
    conn = await asyncpg.connect(stack.env["TOKENRT_POSTGRES_DSN"])
    try:
        row = await conn.fetchrow("SELECT r::text AS whole, key_sha256, last_used_at FROM "
                                  "router.api_keys r WHERE api_key_id = $1", key.api_key_id)
    finally:
        await conn.close()
    assert row["key_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in row["whole"] and secret[8:20] not in row["whole"]
    assert row["last_used_at"] is not None  # the ListModels call above used it


async def test_non_admin_keys_cannot_manage_keys_and_org_admins_stay_in_their_org(keys_router) -> None:  # type: ignore[no-untyped-def]
    org, other = "h2-" + uuid.uuid4().hex[:8], "h2-" + uuid.uuid4().hex[:8]
    plain = (await create_key(keys_router, org)).secret
    org_admin = (await create_key(keys_router, org, project="ops", admin=True)).secret
    foreign = await create_key(keys_router, other)
    async with grpc.aio.insecure_channel(keys_router.address) as ch:
        stub = keys_router.stub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CreateApiKey(router_pb2.CreateApiKeyRequest(
                tenant=T.Tenant(org_id=org, project_id="web")), metadata=auth(plain))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListApiKeys(router_pb2.ListApiKeysRequest(org_id=org), metadata=auth(plain))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # An org admin: its own org yes, another org no (create, list, revoke).
        mine = await stub.CreateApiKey(router_pb2.CreateApiKeyRequest(
            tenant=T.Tenant(org_id=org, project_id="api")), metadata=auth(org_admin))
        assert mine.api_key.tenant.project_id == "api"
        for call in (stub.CreateApiKey(router_pb2.CreateApiKeyRequest(
                         tenant=T.Tenant(org_id=other, project_id="web")), metadata=auth(org_admin)),
                     stub.ListApiKeys(router_pb2.ListApiKeysRequest(org_id=other),
                                      metadata=auth(org_admin)),
                     stub.RevokeApiKey(router_pb2.RevokeApiKeyRequest(
                         api_key_id=foreign.api_key.api_key_id), metadata=auth(org_admin))):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        listed = await stub.ListApiKeys(router_pb2.ListApiKeysRequest(org_id=org),
                                        metadata=auth(org_admin))
        assert {k.tenant.org_id for k in listed.api_keys} == {org} and len(listed.api_keys) == 3
        assert all(k.key_prefix and len(k.key_prefix) == 8 for k in listed.api_keys)
        # Pages of one, in order, end with an empty token.
        seen, token = [], ""
        while True:
            page = await stub.ListApiKeys(router_pb2.ListApiKeysRequest(
                org_id=org, page_size=1, page_token=token), metadata=auth(org_admin))
            seen += [k.api_key_id for k in page.api_keys]
            token = page.next_page_token
            if not token:
                break
        assert seen == sorted(k.api_key_id for k in listed.api_keys)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CreateApiKey(router_pb2.CreateApiKeyRequest(
                tenant=T.Tenant(org_id=org, project_id="a b")), metadata=auth(ADMIN_KEY))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "tenant.project_id" in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.RevokeApiKey(router_pb2.RevokeApiKeyRequest(
                api_key_id="key_0123456789abcdef"), metadata=auth(ADMIN_KEY))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        # What Postgres text cannot hold is bad input, not an outage.
        for bad in (router_pb2.CreateApiKeyRequest(tenant=T.Tenant(org_id="a\x00b", project_id="p")),
                    router_pb2.CreateApiKeyRequest(tenant=T.Tenant(org_id=org, project_id="p"),
                                                   name="x\x00y")):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.CreateApiKey(bad, metadata=auth(ADMIN_KEY))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for listing in (router_pb2.ListApiKeysRequest(org_id=org, page_token="\x00"),
                        router_pb2.ListApiKeysRequest(org_id="o\x00")):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ListApiKeys(listing, metadata=auth(ADMIN_KEY))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_revocation_is_effective_on_every_replica_within_seconds(keys_router, stack, sim_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    second = await asyncio.to_thread(launch_router, stack, sim_url, tmp_path)
    try:
        created = await create_key(keys_router, "h2-" + uuid.uuid4().hex[:8])
        secret = created.secret
        assert await list_models(keys_router, secret) == grpc.StatusCode.OK
        assert await list_models(second, secret) == grpc.StatusCode.OK  # now cached there
        async with grpc.aio.insecure_channel(keys_router.address) as ch:
            revoked = await keys_router.stub(ch).RevokeApiKey(router_pb2.RevokeApiKeyRequest(
                api_key_id=created.api_key.api_key_id), metadata=auth(ADMIN_KEY))
        t0 = time.monotonic()
        assert revoked.api_key.HasField("revoked_at")
        assert await list_models(keys_router, secret) == grpc.StatusCode.UNAUTHENTICATED
        while await list_models(second, secret) == grpc.StatusCode.OK:
            assert time.monotonic() - t0 < 5, "the other replica still accepts a revoked key"
            await asyncio.sleep(0.1)
        assert await list_models(second, secret) == grpc.StatusCode.UNAUTHENTICATED
        assert "router.auth_failed" in assert_no_secrets(second.log)
    finally:
        await asyncio.to_thread(second.stop)


async def test_failed_authentications_are_rate_limited_per_peer_on_grpc_and_http(stack, sim_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = await asyncio.to_thread(launch_router, stack, sim_url, tmp_path, TOKENRT_ROUTER_AUTH_MAX_FAILURES="3",
                                TOKENRT_ROUTER_AUTH_BLOCK_SECONDS="3")
    try:
        # No key at all guesses nothing: refused, not counted.
        for _ in range(5):
            assert await list_models(r, "") == grpc.StatusCode.UNAUTHENTICATED
        assert await list_models(r, ADMIN_KEY) == grpc.StatusCode.OK
        # Three wrong keys (two over gRPC, one over HTTP) block the peer on both.
        assert await list_models(r, "trk_wrong_1") == grpc.StatusCode.UNAUTHENTICATED
        assert await list_models(r, "trk_wrong_2") == grpc.StatusCode.UNAUTHENTICATED
        async with ClientSession() as http:
            async with http.get(r.http + "/v1/models",
                                headers={"Authorization": "Bearer trk_wrong_3"}) as resp:
                assert resp.status == 401
            async with http.get(r.http + "/v1/models",
                                headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as resp:
                body = await resp.json()
                assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
                assert body["error"]["code"] == "auth_rate_limited"
        async with grpc.aio.insecure_channel(r.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await r.stub(ch).ListModels(router_pb2.ListModelsRequest(),
                                            metadata=auth(ADMIN_KEY))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too many failed authentications" in (info.value.details() or "")
        await asyncio.sleep(3.2)
        assert await list_models(r, ADMIN_KEY) == grpc.StatusCode.OK
        assert_no_secrets(r.log)
    finally:
        await asyncio.to_thread(r.stop)


def keys_cli(r: RouterProc, capsys, monkeypatch, *args: str,  # type: ignore[no-untyped-def]
             key: str = ADMIN_KEY) -> tuple[int, str, str]:
    """`tokenrt keys ...` in this process (its real code path, against the real router)."""
    for k, v in r.env.items():
        if k.startswith("TOKENRT_"):
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("TOKENRT_API_KEY", key)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    parsed = parser.parse_args(["keys", *args])
    code = parsed.func(parsed)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_keys_cli_create_list_revoke(keys_router, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    org = "h2-" + uuid.uuid4().hex[:8]

    def run(*args: str, key: str = ADMIN_KEY) -> tuple[int, str, str]:
        return keys_cli(keys_router, capsys, monkeypatch, *args, key=key)

    code, out, err = run("create", "--org", org, "--project", "web", "--user", "bo",
                         "--name", "laptop", "--json")
    assert code == 0, err
    created = json.loads(out)
    key_id = created["api_key"]["api_key_id"]
    assert created["secret"].startswith("trk_") and created["api_key"]["tenant"]["user_id"] == "bo"
    assert asyncio.run(list_models(keys_router, created["secret"])) == grpc.StatusCode.OK
    code, out, _ = run("list", "--org", org)
    assert code == 0 and key_id in out and "laptop" in out and created["secret"] not in out
    code, out, err = run("revoke", key_id)
    assert code == 0 and key_id in out, err
    assert asyncio.run(list_models(keys_router, created["secret"])) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert key_id not in run("list", "--org", org)[1]
    assert key_id in run("list", "--org", org, "--all")[1]
    code, _, err = run("list", "--org", org, key=created["secret"])
    assert code == 1 and "UNAUTHENTICATED" in err
    code, out, err = run("create", "--org", org, "--project", "web")  # plain: the key alone
    assert code == 0 and out.strip().startswith("trk_") and "cannot be shown again" in err


def test_no_key_in_the_router_log(keys_router) -> None:  # type: ignore[no-untyped-def]
    """Keys were created, used, refused and revoked above: none of them was logged."""
    text = assert_no_secrets(keys_router.log)
    assert "router.key_created" in text and "router.key_revoked" in text


async def test_key_store_outage_keeps_known_keys_and_answers_unavailable_for_others(stack) -> None:  # type: ignore[no-untyped-def]
    """Real Postgres, a fresh schema: a key known before the outage stays usable once its
    cache entry expired; an unknown one is UNAVAILABLE (it may be valid), never 401."""
    schema = "router_t_" + uuid.uuid4().hex[:8]
    dsn = stack.env["TOKENRT_POSTGRES_DSN"]
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    holder: list[asyncpg.Pool | None] = [pool]
    log = structlog.get_logger()
    store = KeyStore(lambda: holder[0], schema, log)
    now = [0.0]
    keys = Keys(KeyMap({}), store, load_settings({}), log, clock=lambda: now[0])
    try:
        with pytest.raises(Refusal) as info:  # not migrated yet: UNAVAILABLE, not 401
            await keys.caller("Bearer trk_whatever_key_12345", "ipv4:10.0.0.1:1")
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        await store.migrate(_connected)
        record, secret = await store.create("o", "p", "", "n", False)
        assert (await keys.caller(f"Bearer {secret}", "10.0.0.1")).api_key_id == record.api_key_id
        holder[0] = None  # Postgres gone
        now[0] = 100.0  # the cache entry expired
        assert (await keys.caller(f"Bearer {secret}", "10.0.0.1")).org_id == "o"
        with pytest.raises(Refusal) as info:
            await keys.caller("Bearer trk_unknown_key_abcdefgh", "10.0.0.1")
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        assert keys.guard.blocked_for("10.0.0.1") == 0 and not keys.guard._failures
        holder[0] = pool
        await store.revoke(record.api_key_id)
        now[0] = 200.0
        with pytest.raises(Refusal) as info:
            await keys.caller(f"Bearer {secret}", "10.0.0.1")
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()


async def _connected() -> None:
    """What the router waits for before migrating: here the pool exists already."""


# -- service keys: acting for a named tenant (issue 7) ------------------------------


def act_for(org: str, project: str = "web", user: str = "") -> tuple[tuple[str, str], ...]:
    headers = ((ACT_FOR_ORG_HEADER, org), (ACT_FOR_PROJECT_HEADER, project))
    return headers + (((ACT_FOR_USER_HEADER, user),) if user else ())


def chat(session: str, user: str = "") -> router_pb2.CompleteRequest:
    return router_pb2.CompleteRequest(
        session_id=session, user_id=user,
        messages=[T.Message(role=T.ROLE_USER, content=[T.ContentPart(
            text=f"Summarise session {session} in one line.")])],
        sampling=T.SamplingParams(max_output_tokens=16),
        preferences=router_pb2.RoutingPreferences(
            forced_model="sim/gpt-4.1-nano", cache=T.CachePolicy(no_cache=True, no_store=True)))


async def create_service_key(r: RouterProc, org: str) -> router_pb2.CreateApiKeyResponse:
    async with grpc.aio.insecure_channel(r.address) as ch:
        return await r.stub(ch).CreateApiKey(router_pb2.CreateApiKeyRequest(
            tenant=T.Tenant(org_id=org, project_id="svc"), name="compressor", service=True),
            metadata=auth(ADMIN_KEY), timeout=10)


async def events_of(stack, org: str, session: str, n: int) -> list[events_pb2.UsageEvent]:  # type: ignore[no-untyped-def]
    """The ledger's events of a tenant's session (at least n, or what came within 15 s)."""
    async with grpc.aio.insecure_channel(stack.settings.endpoint("ledger").address) as ch:
        stub = ledger_pb2_grpc.LedgerServiceStub(ch)
        deadline = time.monotonic() + 15
        while True:
            r = await stub.ListEvents(ledger_pb2.ListEventsRequest(
                filter=ledger_pb2.UsageFilter(org_id=org, session_id=session), page_size=50),
                timeout=5)
            if len(r.events) >= n or time.monotonic() > deadline:
                return list(r.events)
            await asyncio.sleep(0.2)


def test_only_the_bootstrap_admin_creates_service_keys(keys_router, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    org = "h5-" + uuid.uuid4().hex[:8]
    org_admin = asyncio.run(create_key(keys_router, org, project="ops", admin=True)).secret

    async def by_org_admin() -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(keys_router.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await keys_router.stub(ch).CreateApiKey(router_pb2.CreateApiKeyRequest(
                    tenant=T.Tenant(org_id=org, project_id="svc"), service=True),
                    metadata=auth(org_admin), timeout=10)
        return info.value

    err = asyncio.run(by_org_admin())
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "bootstrap admin" in (err.details() or "")
    made = asyncio.run(create_service_key(keys_router, org))
    assert made.api_key.service and not made.api_key.admin
    # The CLI's flag (its own org admin may not either), and the role in its listing.
    code, _, err_text = keys_cli(keys_router, capsys, monkeypatch, "create", "--org", org,
                                 "--project", "svc", "--service", key=org_admin)
    assert code == 1 and "PERMISSION_DENIED" in err_text
    code, out, err_text = keys_cli(keys_router, capsys, monkeypatch, "create", "--org", org,
                                   "--project", "svc", "--service", "--json")
    assert code == 0 and json.loads(out)["api_key"]["service"] is True, err_text
    code, out, _ = keys_cli(keys_router, capsys, monkeypatch, "list", "--org", org)
    rows = [line for line in out.splitlines() if line.startswith("key_")]
    assert code == 0 and len(rows) == 3 and sum(" service " in r for r in rows) == 2
    assert sum(" admin " in r for r in rows) == 1


async def test_a_service_key_acts_for_the_named_tenant_budget_and_usage(keys_router, stack) -> None:  # type: ignore[no-untyped-def]
    own_org, tenant = "h5-svc-" + uuid.uuid4().hex[:8], "h5-ten-" + uuid.uuid4().hex[:8]
    service = await create_service_key(keys_router, own_org)
    key, key_id = service.secret, service.api_key.api_key_id
    session = "s-" + uuid.uuid4().hex[:8]
    scope = T.Scope(kind=T.SCOPE_KIND_SESSION, org_id=tenant, project_id="web", user_id="ann",
                    session_id=session)
    async with grpc.aio.insecure_channel(keys_router.address) as ch, \
            grpc.aio.insecure_channel(stack.settings.endpoint("budget").address) as bch:
        router, budget = keys_router.stub(ch), budget_pb2_grpc.BudgetServiceStub(bch)
        limit = (await budget.SetLimit(budget_pb2.SetLimitRequest(limit=budget_pb2.Limit(
            scope=scope, metric=T.LIMIT_METRIC_COST, period=T.LIMIT_PERIOD_TOTAL,
            limit=10**12, action=T.LIMIT_ACTION_DENY, name="h5")), timeout=10)).limit
        done = await router.Complete(chat(session), metadata=auth(key) + act_for(
            tenant, user="ann"), timeout=30)
        cost = done.completion.cost_nusd
        assert cost > 0
        # Usage: the tenant's, made by the service key; none under the key's own org.
        [event] = await events_of(stack, tenant, session, 1)
        assert (event.org_id, event.project_id, event.user_id) == (tenant, "web", "ann")
        assert event.api_key_id == key_id and event.cost_nusd == cost
        assert await events_of(stack, own_org, session, 0) == []
        # Budget: the tenant's session limit was charged.
        assert (await settled_limit(budget, scope)).used == cost
        # ...and decides: at its limit, the tenant's next request is refused, while the
        # service key's own requests (its own tenant) still pass.
        limit.limit = cost
        await budget.SetLimit(budget_pb2.SetLimitRequest(limit=limit), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await router.Complete(chat(session), metadata=auth(key) + act_for(
                tenant, user="ann"), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await router.Complete(chat(session), metadata=auth(key), timeout=30)
        [own] = await events_of(stack, own_org, session, 1)
        assert own.org_id == own_org and own.project_id == "svc" and own.api_key_id == key_id


async def test_a_plain_key_cannot_act_for_another_tenant(keys_router) -> None:  # type: ignore[no-untyped-def]
    org, victim = "h5-" + uuid.uuid4().hex[:8], "h5-victim-" + uuid.uuid4().hex[:8]
    plain = (await create_key(keys_router, org)).secret
    org_admin = (await create_key(keys_router, org, project="ops", admin=True)).secret
    service = (await create_service_key(keys_router, org)).secret
    async with grpc.aio.insecure_channel(keys_router.address) as ch:
        stub = keys_router.stub(ch)

        async def refused(call) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            return info.value

        # Plain, org-admin and even the bootstrap admin key: not service keys.
        for key in (plain, org_admin, ADMIN_KEY):
            for call in (stub.Complete(chat("s-x"), metadata=auth(key) + act_for(victim)),
                         stub.ListModels(router_pb2.ListModelsRequest(),
                                         metadata=auth(key) + act_for(victim))):
                err = await refused(call)
                assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
                assert "not a service key" in (err.details() or "")
        # One header alone counts as naming a tenant.
        err = await refused(stub.Complete(chat("s-x"), metadata=auth(plain) + (
            (ACT_FOR_USER_HEADER, "someone"),)))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        # A service key: org and project both, well-formed; acting, it is no admin; a user
        # it acts for binds the request's user_id.
        err = await refused(stub.Complete(chat("s-x"), metadata=auth(service) + (
            (ACT_FOR_ORG_HEADER, victim),)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ACT_FOR_PROJECT_HEADER in (err.details() or "")
        err = await refused(stub.Complete(chat("s-x"), metadata=auth(service) + act_for(
            victim, project="a b")))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        err = await refused(stub.ListApiKeys(router_pb2.ListApiKeysRequest(org_id=victim),
                                             metadata=auth(service) + act_for(victim)))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        err = await refused(stub.Complete(chat("s-x", user="bob"), metadata=auth(service)
                                          + act_for(victim, user="ann")))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert_no_secrets(keys_router.log)


async def test_a_service_key_acting_for_a_tenant_uses_its_cache_namespace(keys_router) -> None:  # type: ignore[no-untyped-def]
    """What the service key stores acting for a tenant is that tenant's: the tenant's own
    key hits it; the service key, as itself, does not."""
    tenant = "h5-cache-" + uuid.uuid4().hex[:8]
    plain = (await create_key(keys_router, tenant)).secret
    service = (await create_service_key(keys_router, "h5-svc-" + uuid.uuid4().hex[:8])).secret
    req = router_pb2.CompleteRequest(
        messages=[T.Message(role=T.ROLE_USER, content=[T.ContentPart(
            text="Write a haiku about namespaces " + uuid.uuid4().hex)])],
        sampling=T.SamplingParams(temperature=0.0, max_output_tokens=32),
        preferences=router_pb2.RoutingPreferences(forced_model="sim/gpt-4o"))
    async with grpc.aio.insecure_channel(keys_router.address) as ch:
        stub = keys_router.stub(ch)
        first = (await stub.Complete(req, metadata=auth(service) + act_for(tenant),
                                     timeout=30)).completion
        assert not first.cache.hit and first.cache.stored
        for _ in range(50):  # the store is coalesced off the critical path
            mine = (await stub.Complete(req, metadata=auth(plain), timeout=30)).completion
            if mine.cache.hit:
                break
            await asyncio.sleep(0.1)
        assert mine.cache.hit and mine.message.content[0].text == first.message.content[0].text
        own = (await stub.Complete(req, metadata=auth(service), timeout=30)).completion
        assert not own.cache.hit
