"""Secrets never leave the process that holds them: not in logs, metrics, usage events,
settings dumps or answers.

A router of our own (wired to the session stack) holds a static API key from
TOKENRT_ROUTER_KEYS and a provider key in OPENAI_API_KEY, both carrying a marker, and
logs at debug level. Requests through gRPC (unary and streaming) and the HTTP endpoint,
with the right key and with a wrong one that carries the marker too, go to the OpenAI
deployment (pointed at the simulator, which receives the provider key). Then every
service's log, every /metrics page and every usage event published on NATS is searched
for the marker.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import nats
import pytest
from nats.aio.msg import Msg

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))  # fuzz_procs (importlib mode)

from fuzz_procs import KeyedRouter, Sim, start_keyed_router, start_sim  # noqa: E402

from tokenrt.v1 import common_pb2, router_pb2, router_pb2_grpc  # noqa: E402
from tokenrt_common.settings import (  # noqa: E402
    REDACTED,
    SERVICES,
    SettingsError,
    load_settings,
    redacted,
)
from tokenrt_testkit.stack import Stack  # noqa: E402

MARKER = f"SECRETMARK{uuid.uuid4().hex[:10]}"
ROUTER_KEY = f"trk_{MARKER}_static"
WRONG_KEY = f"trk_{MARKER}_wrong"
PROVIDER_KEY = f"sk-{MARKER}-provider"
ADMIN_KEY = f"trk_{MARKER}_admin"
T = common_pb2


@pytest.fixture(scope="module")
def secret_router(stack: Stack, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[KeyedRouter, Sim, str]]:
    folder = tmp_path_factory.mktemp("secrets")
    sim = start_sim(folder / "sim.log")
    org = f"sec-{uuid.uuid4().hex[:8]}"
    router = start_keyed_router(
        stack, folder, sim, ADMIN_KEY, TOKENRT_LOG_LEVEL="debug",
        TOKENRT_ROUTER_KEYS=f"{ROUTER_KEY}={org}/app",
        TOKENRT_PROVIDER_OPENAI_BASE_URL=sim.base_url, OPENAI_API_KEY=PROVIDER_KEY)
    try:
        yield router, sim, org
    finally:
        router.service.stop()
        sim.stop()


def ask(text: str, model: str = "openai/gpt-4o-mini") -> router_pb2.CompleteRequest:
    return router_pb2.CompleteRequest(
        session_id="s1",
        messages=[T.Message(role=T.ROLE_USER, content=[T.ContentPart(text=text)])],
        sampling=T.SamplingParams(max_output_tokens=32),
        preferences=router_pb2.RoutingPreferences(forced_model=model))


async def drive(router: KeyedRouter, subject: str, nats_url: str) -> list[bytes]:
    """Send requests carrying the keys; return the usage events published meanwhile."""
    events: list[bytes] = []
    two = asyncio.Event()

    async def keep(msg: Msg) -> None:
        events.append(msg.data + json.dumps(dict(msg.headers or {})).encode())
        if len(events) >= 2:
            two.set()

    nc = await nats.connect(nats_url)
    sub = await nc.subscribe(subject, cb=keep)
    good = (("authorization", f"Bearer {ROUTER_KEY}"),)
    bad = (("authorization", f"Bearer {WRONG_KEY}"),)
    try:
        async with grpc.aio.insecure_channel(router.address) as ch:
            stub = router_pb2_grpc.RouterServiceStub(ch)
            done = await stub.Complete(ask("say hi"), metadata=good, timeout=30)
            assert done.completion.message.content, "the provider call did not answer"
            assert MARKER not in str(done)
            stream = stub.StreamComplete(router_pb2.StreamCompleteRequest(
                request=ask("count to three")), metadata=good, timeout=30)
            assert MARKER not in "".join([str(chunk) async for chunk in stream])
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Complete(ask("who am i"), metadata=bad, timeout=30)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert MARKER not in refused.value.details()
            assert MARKER not in str(refused.value.trailing_metadata())
        for key in (ROUTER_KEY, WRONG_KEY):
            status, body = await asyncio.to_thread(_http_chat, router.http_base, key)
            assert MARKER not in body, body
            assert status == (200 if key == ROUTER_KEY else 401), body
        # The usage events are published off the request path, a few ms later.
        await asyncio.wait_for(two.wait(), 15)
    finally:
        await sub.unsubscribe()
        await nc.close()
    return events


def _http_chat(base: str, key: str) -> tuple[int, str]:
    body = json.dumps({"model": "openai/gpt-4o-mini", "max_tokens": 16,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    request = urllib.request.Request(
        f"{base}/chat/completions", data=body, method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


async def test_keys_reach_no_log_metric_event_or_answer(
    stack: Stack, secret_router: tuple[KeyedRouter, Sim, str],
) -> None:
    router, sim, org = secret_router
    settings = stack.settings
    events = await drive(router, f"{settings.usage_subject_prefix}.{org}.>", settings.nats_url)
    assert len(events) >= 2, "no usage events arrived: the requests did not run"

    # The provider key did reach the provider (so it was in the process), and nowhere else.
    logs = {name: stack.log_path(name) for name in SERVICES}
    logs["own router"] = router.service.log
    for name, path in logs.items():
        text = path.read_text(errors="replace")
        assert text, f"{name}: empty log {path}"
        assert MARKER not in text, f"{name}: a key is in {path}"
    # The wrong key was noticed and logged, without the key itself.
    assert "router.auth_failed" in router.service.log.read_text()

    pages = {name: f"http://127.0.0.1:{settings.endpoint(name).metrics_port}/metrics"
             for name in SERVICES}
    pages["own router"] = router.metrics_url
    for name, url in pages.items():
        assert MARKER not in await asyncio.to_thread(_metrics, url), f"{name}: a key in /metrics"

    for event in events:
        assert MARKER.encode() not in event


def test_settings_dumps_redact_secrets() -> None:
    env = {"TOKENRT_ROUTER_KEYS": f"{ROUTER_KEY}=org/proj",
           "TOKENRT_POSTGRES_DSN": f"postgresql://app:{MARKER}@db:5432/tokenrt",
           "TOKENRT_REDIS_URL": f"redis://:{MARKER}@cache:6379/0",
           "TOKENRT_NATS_URL": f"nats://user:{MARKER}@nats:4222"}
    settings = load_settings(env)
    for shown in (repr(settings), str(settings), json.dumps(redacted(settings))):
        assert MARKER not in shown
    shown_map = redacted(settings)
    assert shown_map["router_keys"] == REDACTED
    assert shown_map["postgres_dsn"] == f"postgresql://app:{REDACTED}@db:5432/tokenrt"
    assert shown_map["redis_url"] == f"redis://:{REDACTED}@cache:6379/0"
    dsn_param = redacted(load_settings(
        {"TOKENRT_POSTGRES_DSN": f"postgresql://db:5432/t?sslmode=require&password={MARKER}"}))
    assert dsn_param["postgres_dsn"] == f"postgresql://db:5432/t?sslmode=require&password={REDACTED}"
    # A malformed URL is named in the error, without its password.
    with pytest.raises(SettingsError) as err:
        load_settings({"TOKENRT_POSTGRES_DSN": f"mysql://app:{MARKER}@db:5432/tokenrt"})
    assert MARKER not in str(err.value) and "mysql://app:" in str(err.value)
    with pytest.raises(SettingsError) as err:
        load_settings({"TOKENRT_REDIS_URL": f"redis://:{MARKER}@cache:port/0"})
    assert MARKER not in str(err.value) and "is malformed" in str(err.value)
    # to_env is what child processes are started with: it must keep the real values.
    assert load_settings(settings.to_env()) == settings
    assert settings.to_env()["TOKENRT_ROUTER_KEYS"].startswith(ROUTER_KEY)
