"""The per-tenant NATS permissions of docs/security.md, on a private nats-server started
with the very configuration block that page shows.

An analytics user of organisation `acme` receives acme's usage events live and through
its JetStream consumer; another organisation's subjects, a consumer filtered on them or
unfiltered, reading the stream by sequence and publishing a usage event are refused.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from tokenrt_testkit.procs import stop_process
from tokenrt_testkit.stack import ROOT, free_ports

NATS_SERVER = Path(sys.executable).parent / "nats-server"
PASSWORDS = {"TOKENRT_NATS_PASSWORD": "svc-pass-1", "ACME_NATS_PASSWORD": "acme-pass-1"}
ACME, GLOBEX = "tokenrt.usage.v1.acme.web", "tokenrt.usage.v1.globex.web"


def documented_config() -> str:
    page = (ROOT / "docs" / "security.md").read_text()
    found = re.search(r"```conf\n(.*?)\n```", page, re.S)
    assert found, "docs/security.md lost its nats-server.conf block"
    return found.group(1)


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("nats-perms")
    conf = folder / "nats.conf"
    conf.write_text(documented_config().replace('"/data/nats"', f'"{folder / "js"}"'))
    port = free_ports(1)[0]
    log = folder / "nats.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(NATS_SERVER), "-c", str(conf), "-a", "127.0.0.1",
                                 "-p", str(port)], env={**os.environ, **PASSWORDS},
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    yield f"nats://127.0.0.1:{port}"
    stop_process(proc, grace=5)


@pytest.fixture
async def service(nats_url: str) -> AsyncIterator[nats.NATS]:
    nc = await nats.connect(nats_url, user="tokenrt",
                            password=PASSWORDS["TOKENRT_NATS_PASSWORD"])
    js = nc.jetstream()
    await js.add_stream(name="USAGE", subjects=["tokenrt.usage.v1.>"])
    yield nc
    await nc.close()


async def test_a_tenant_reads_its_own_usage_events_and_nothing_else(
    nats_url: str, service: nats.NATS,
) -> None:
    js = service.jetstream()
    for subject in (ACME, ACME, GLOBEX, GLOBEX):
        await js.publish(subject, subject.encode())
    stored = (await js.stream_info("USAGE")).state.messages

    violations: list[str] = []

    async def on_error(exc: Exception) -> None:
        violations.append(str(exc))

    acme = await nats.connect(nats_url, user="acme-analytics",
                              password=PASSWORDS["ACME_NATS_PASSWORD"],
                              inbox_prefix="_INBOX_acme", error_cb=on_error)
    try:
        ajs = acme.jetstream(timeout=2)
        # Its own consumer, filtered on its own subjects: replay from the stream.
        await ajs.add_consumer("USAGE", ConsumerConfig(
            name="acme_analytics", filter_subject="tokenrt.usage.v1.acme.>",
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT))
        pull = await ajs.pull_subscribe_bind("acme_analytics", "USAGE")
        got = await pull.fetch(10, timeout=3)
        assert [m.subject for m in got] == [ACME, ACME]

        # Live events over core NATS: its own arrive, another tenant's never do.
        live: list[str] = []

        async def note(msg: Msg) -> None:
            live.append(msg.subject)

        for subject in ("tokenrt.usage.v1.acme.>", "tokenrt.usage.v1.globex.>",
                        "tokenrt.usage.v1.>"):
            await acme.subscribe(subject, cb=note)
        await acme.flush()
        await service.publish(GLOBEX, b"not for acme")
        await service.publish(ACME, b"for acme")
        await service.flush()
        for _ in range(100):  # its own event arrives (a fixed 0.5 s was too short once)
            if live:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # room for another tenant's, which must not come
        assert live == [ACME]

        # Refused: a consumer on another tenant's subjects, an unfiltered one, the raw
        # stream by sequence, publishing a usage event.
        with pytest.raises(Exception):  # noqa: B017 (a timeout or a permission error)
            await ajs.add_consumer("USAGE", ConsumerConfig(
                name="acme_analytics", filter_subject="tokenrt.usage.v1.globex.>"))
        with pytest.raises(Exception):  # noqa: B017
            await ajs.add_consumer("USAGE", ConsumerConfig(name="acme_analytics"))
        with pytest.raises(Exception):  # noqa: B017
            await ajs.get_msg("USAGE", 3)
        await acme.publish(ACME, b"forged")
        await acme.flush()
        await asyncio.sleep(0.3)
    finally:
        await acme.close()
    # The service published two more; the forged one never reached the stream.
    assert (await js.stream_info("USAGE")).state.messages == stored + 2
    text = " ".join(violations).lower()  # nats-py lower-cases the server's -ERR
    assert 'permissions violation for subscription to "tokenrt.usage.v1.globex.>"' in text
    assert 'permissions violation for publish to "tokenrt.usage.v1.acme.web"' in text

