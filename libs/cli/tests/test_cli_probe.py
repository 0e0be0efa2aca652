"""Probes speak each server's protocol: closed ports fail fast, the machine's servers answer."""

from __future__ import annotations

import time

import pytest

from tokenrt_cli.probe import mask_url, probe, probe_all
from tokenrt_testkit.stack import free_ports


async def test_closed_ports_do_not_answer_within_the_timeout() -> None:
    nats, postgres, redis = free_ports(3)
    urls = {"nats": f"nats://127.0.0.1:{nats}",
            "postgres": f"postgresql://postgres@127.0.0.1:{postgres}/tokenrt",
            "redis": f"redis://127.0.0.1:{redis}/0"}
    began = time.monotonic()
    found = await probe_all(urls, timeout_seconds=1.0)
    assert time.monotonic() - began < 3.0
    assert {kind: p.answers for kind, p in found.items()} == {
        "nats": False, "postgres": False, "redis": False}


async def test_a_server_of_another_kind_is_not_taken_for_the_one_asked() -> None:
    # The machine's Redis is on 6379: it is no NATS and no Postgres.
    assert not (await probe("nats", "nats://127.0.0.1:6379", 1.0)).answers
    assert not (await probe("postgres", "postgresql://postgres@127.0.0.1:6379/x", 1.0)).answers


@pytest.mark.parametrize(("kind", "url"), [
    ("nats", "nats://127.0.0.1:4222"),
    ("postgres", "postgresql://postgres@127.0.0.1:5432/test"),
    ("redis", "redis://127.0.0.1:6379/0"),
])
async def test_the_machines_servers_answer(kind: str, url: str) -> None:
    found = await probe(kind, url, timeout_seconds=2.0)
    assert found.answers, found.detail
    assert not found.missing_database


async def test_a_missing_database_is_an_answering_server() -> None:
    found = await probe("postgres", "postgresql://postgres@127.0.0.1:5432/no_such_db_tokenrt", 2.0)
    assert found.answers and found.missing_database


def test_passwords_are_masked() -> None:
    assert mask_url("postgresql://app:s3cret@db:5432/tokenrt") == "postgresql://app:***@db:5432/tokenrt"
    assert mask_url("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert "s3cret" not in mask_url("postgresql://db/tokenrt?user=app&password=s3cret")
    assert mask_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
