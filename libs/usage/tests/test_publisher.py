"""The publisher against real NATS: dedupe by event id, the stream set-up, the outbox
replay when NATS comes back, and nothing lost when the publishing process is SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nats
from nats.aio.client import Client as NATS
from nats.js import api

from tokenrt_usage import Delivery, Publisher, StreamSpec, ensure_streams
from tokenrt_usage.testing import make_event, stream_events

from .conftest import NATS_URL, NatsServer

ROOT = Path(__file__).resolve().parents[3]


async def test_duplicate_event_ids_are_stored_once(nc: NATS, spec: StreamSpec,
                                                   tmp_path: Path) -> None:
    pub = Publisher(NATS_URL, spec, tmp_path / "outbox.sqlite3")
    await pub.start()
    try:
        assert await pub.wait_ready(within=10)
        events = [make_event(org_id="acme", project_id="web.app") for _ in range(20)]
        assert set(await pub.publish_many(events)) == {Delivery.ACKED}
        # Publish every event again, and some a third time: JetStream drops them all.
        assert set(await pub.publish_many(events + events[:5])) == {Delivery.ACKED}
        stored = await stream_events(nc.jetstream(), spec.name)
        assert sorted(e.event_id for e in stored) == sorted(e.event_id for e in events)
        msg = await nc.jetstream().get_msg(spec.name, 1)
        assert msg.subject == f"{spec.subject_prefix}.acme.web%2Eapp"
        assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == events[0].event_id
    finally:
        await pub.close()


async def test_stream_setup_is_idempotent_and_applies_changes(nc: NATS, spec: StreamSpec) -> None:
    js = nc.jetstream()
    await ensure_streams(js, spec)
    await ensure_streams(js, spec)  # twice: no error, same config
    info = await js.stream_info(spec.name)
    assert info.config.storage == api.StorageType.FILE
    assert info.config.duplicate_window == 120
    assert info.config.subjects == [f"{spec.subject_prefix}.>"]
    changed = StreamSpec(spec.name, spec.subject_prefix, spec.dlq_subject, retention_days=7,
                         duplicate_window_seconds=300)
    await ensure_streams(js, changed)
    info = await js.stream_info(spec.name)
    assert info.config.max_age == 7 * 86_400
    assert info.config.duplicate_window == 300
    assert (await js.stream_info(spec.dlq_stream)).config.subjects[0] == spec.dlq_subject


async def test_outbox_replays_in_order_when_nats_comes_back(
        private_nats: NatsServer, spec: StreamSpec, tmp_path: Path) -> None:
    pub = Publisher(private_nats.url, spec, tmp_path / "outbox.sqlite3", connect_timeout=0.3)
    await pub.start()
    try:
        events = [make_event(session_id=f"s{i}") for i in range(50)]
        for event in events:  # nothing listens on the port yet
            assert await pub.publish(event) == Delivery.OUTBOX
        assert pub.pending == 50
        assert await pub.outbox.count() == 50

        await private_nats.start()
        assert await pub.flush(within=30), f"outbox still holds {pub.pending}"
        # After the replay, new events go straight to the stream.
        late = make_event(session_id="late")
        assert await pub.publish(late) == Delivery.ACKED

        conn = await nats.connect(private_nats.url)
        stored = await stream_events(conn.jetstream(), spec.name)
        await conn.close()
        assert [e.event_id for e in stored] == [e.event_id for e in events + [late]]
        assert await pub.outbox.count() == 0
    finally:
        await pub.close()


CHILD = textwrap.dedent("""
    import asyncio, sys
    from tokenrt_usage import Publisher, StreamSpec
    from tokenrt_usage.testing import make_event

    async def main() -> None:
        url, name, prefix, outbox = sys.argv[1:5]
        pub = Publisher(url, StreamSpec(name=name, subject_prefix=prefix,
                        dlq_subject=prefix + "-dlq"), outbox, connect_timeout=0.3)
        await pub.start()
        i = 0
        while True:
            event = make_event(session_id=f"s{i}")
            where = await pub.publish(event)
            print(event.event_id, where.value, flush=True)
            i += 1

    asyncio.run(main())
""")


async def _run_and_kill(url: str, spec: StreamSpec, outbox: Path, want: int) -> list[str]:
    """Start a publishing process, SIGKILL it after `want` successes, return their ids."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url, spec.name, spec.subject_prefix,
                             str(outbox)], stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    ids: list[str] = []
    deadline = time.monotonic() + 60
    while len(ids) < want and time.monotonic() < deadline:
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line:
            break
        ids += _reported([line])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    # A line the child had written before dying also counts as a success it reported.
    ids += _reported(proc.stdout.read().splitlines())
    assert len(ids) >= want, "the publishing process did not report enough successes"
    return ids


async def test_sigkill_after_publish_loses_nothing_with_nats_down(
        private_nats: NatsServer, spec: StreamSpec, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    ids = await _run_and_kill(private_nats.url, spec, outbox, want=200)

    await private_nats.start()
    pub = Publisher(private_nats.url, spec, outbox)  # the next process, same outbox
    await pub.start()
    try:
        assert await pub.flush(within=30)
    finally:
        await pub.close()
    conn = await nats.connect(private_nats.url)
    stored = [e.event_id for e in await stream_events(conn.jetstream(), spec.name)]
    await conn.close()
    # Every reported event, in the order published; at most one more, the one the child
    # had committed to its outbox when it was killed before it could report it.
    assert stored[:len(ids)] == ids
    assert len(stored) - len(ids) <= 1


async def test_sigkill_after_publish_loses_nothing_with_nats_up(
        nc: NATS, spec: StreamSpec, tmp_path: Path) -> None:
    await ensure_streams(nc.jetstream(), spec)
    outbox = tmp_path / "outbox.sqlite3"
    ids = await _run_and_kill(NATS_URL, spec, outbox, want=300)
    # Events reported before the child's connection was up sit in its outbox: the next
    # publisher process on the same file sends them.
    pub = Publisher(NATS_URL, spec, outbox)
    await pub.start()
    try:
        assert await pub.flush(within=30)
    finally:
        await pub.close()
    stored = [e.event_id for e in await stream_events(nc.jetstream(), spec.name)]
    assert set(ids) <= set(stored)
    assert len(stored) == len(set(stored))


def _reported(lines: list[bytes]) -> list[str]:
    """Event ids from the child's "<event id> <acked|outbox>" lines (not its log lines)."""
    out = []
    for line in lines:
        parts = line.decode().split()
        if len(parts) == 2 and parts[1] in ("acked", "outbox"):
            out.append(parts[0])
    return out


async def test_an_outbox_that_cannot_open_does_not_stop_publishing(nc: NATS, spec: StreamSpec,
                                                                   tmp_path: Path) -> None:
    """The outbox's folder cannot be made (a file has its name): start() logs it instead of
    raising (the router's start-up, its journal replay and its shutdown drain come after
    it), and events still reach the stream while NATS answers."""
    blocker = tmp_path / "state"
    blocker.write_text("not a folder")
    pub = Publisher(NATS_URL, spec, blocker / "outbox.sqlite3")
    await pub.start()
    try:
        assert await pub.wait_ready(within=10)
        event = make_event(org_id="acme", project_id="web")
        assert await pub.publish_many([event]) == [Delivery.ACKED]
        stored = await stream_events(nc.jetstream(), spec.name)
        assert [e.event_id for e in stored] == [event.event_id]
    finally:
        await pub.close()
