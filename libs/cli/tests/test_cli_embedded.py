"""The embedded path: closed local ports get real NATS (JetStream), Postgres and Valkey."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import nats
import pytest
import redis.asyncio as aioredis

from tokenrt_cli.embedded import port_is_free
from tokenrt_cli.infra import InfraEntry, ensure_infra, stop_infra
from tokenrt_cli.probe import host_port
from tokenrt_common.settings import Settings, load_settings

pytestmark = pytest.mark.timeout(180)


def _ports(settings: Settings) -> list[int]:
    return [host_port("nats", settings.nats_url)[1], host_port("postgres", settings.postgres_dsn)[1],
            host_port("redis", settings.redis_url)[1]]


@pytest.fixture
async def infra(closed_infra_env: dict[str, str]
                ) -> AsyncIterator[tuple[Settings, dict[str, InfraEntry]]]:
    settings = load_settings(env=closed_infra_env)
    assert all(port_is_free("127.0.0.1", port) for port in _ports(settings))
    entries: dict[str, InfraEntry] = {}
    try:
        entries = await ensure_infra(settings, settings.state_path, say=lambda line: None)
        yield settings, entries
    finally:
        stop_infra(entries)


async def _assert_all_answer(settings: Settings) -> None:
    nc = await nats.connect(settings.nats_url, connect_timeout=2, allow_reconnect=False)
    try:
        account = await nc.jetstream().account_info()
        assert account.limits is not None  # JetStream answered for this account
    finally:
        await nc.close()
    conn = await asyncpg.connect(settings.postgres_dsn, timeout=5)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_database()") == "tokenrt"
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()


async def test_closed_ports_get_embedded_servers_that_stop_cleanly(
        infra: tuple[Settings, dict[str, InfraEntry]]) -> None:
    settings, entries = infra
    assert all(e.embedded and e.process is not None for e in entries.values())
    await _assert_all_answer(settings)
    state = settings.state_path
    assert (state / "postgres" / "PG_VERSION").exists()
    assert (state / "nats" / "jetstream").is_dir()

    outcome = stop_infra(entries)
    assert outcome == {"nats": "stopped", "postgres": "stopped", "redis": "stopped"}
    assert all(port_is_free("127.0.0.1", port) for port in _ports(settings))

    # Warm: the same state folder again, no initdb; the data survived.
    began = time.monotonic()
    again = await ensure_infra(settings, state, say=lambda line: None)
    try:
        assert time.monotonic() - began < 15
        await _assert_all_answer(settings)
    finally:
        stop_infra(again)
    assert all(port_is_free("127.0.0.1", port) for port in _ports(settings))


async def test_answering_servers_are_used_not_replaced(tmp_path: Path) -> None:
    """The machine's own NATS/Postgres/Redis answer: nothing is started, nothing stopped."""
    db = f"tokenrt_cli_test_{os.getpid()}"
    env = {"TOKENRT_STATE_DIR": str(tmp_path / "state"),
           "TOKENRT_POSTGRES_DSN": f"postgresql://postgres@127.0.0.1:5432/{db}"}
    settings = load_settings(env=env)
    try:
        entries = await ensure_infra(settings, settings.state_path, say=lambda line: None)
        assert not any(e.embedded or e.process for e in entries.values())
        conn = await asyncpg.connect(settings.postgres_dsn, timeout=5)  # it was created
        await conn.close()
        assert stop_infra(entries) == {}
        assert not any(port_is_free("127.0.0.1", port) for port in (4222, 5432, 6379))
    finally:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres", timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
        finally:
            await conn.close()


_AS_OTHER_USER = """
import asyncio, json, sys
from tokenrt_common.settings import load_settings
from tokenrt_cli.infra import ensure_infra, stop_infra
async def main():
    settings = load_settings()
    entries = await ensure_infra(settings, settings.state_path, say=lambda line: None)
    try:
        print(json.dumps({k: e.process.pid for k, e in entries.items() if e.process}))
    finally:
        print(json.dumps(stop_infra(entries)))
asyncio.run(main())
"""


def _unprivileged_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


@pytest.mark.skipif(os.geteuid() != 0 or _unprivileged_user() is None
                    or shutil.which("setpriv") is None,
                    reason="needs root to switch to an unprivileged user")
def test_the_embedded_path_works_without_root(closed_infra_env: dict[str, str]) -> None:
    user = _unprivileged_user()
    assert user is not None
    home = Path(tempfile.mkdtemp(prefix="tokenrt-nonroot-"))  # pytest's tmp is root-only
    try:
        os.chown(home, user.pw_uid, user.pw_gid)
        _run_embedded_as(user, home, closed_infra_env | {"TOKENRT_STATE_DIR": str(home / "state")})
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _python_for(as_user: list[str], home: Path) -> list[str]:
    """A command that runs Python with this venv's packages as the other user.

    The venv's own interpreter is a link into the installing user's home (here /root,
    mode 0700), which `nobody` cannot enter; the system's Python of the same minor
    version runs the same wheels, so it is used over the venv's site-packages instead.
    """
    candidates = [[sys.executable]]
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if system.exists():
        site_dir = sysconfig.get_paths()["purelib"]
        candidates.append([str(system), "-c",
                           f"import site, sys; site.addsitedir({site_dir!r}); "
                           "exec(sys.argv[1])"])
    for python in candidates:
        probe = [*python, "import tokenrt_cli.infra"] if len(python) > 1 else \
            [*python, "-c", "import tokenrt_cli.infra"]
        if subprocess.run([*as_user, *probe], cwd=home, capture_output=True,
                          check=False).returncode == 0:
            return python if len(python) > 1 else [*python, "-c"]
    pytest.skip("the user can run neither this venv's Python nor the system's over its packages")


def _run_embedded_as(user: pwd.struct_passwd, home: Path, settings_env: dict[str, str]) -> None:
    as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    python = _python_for(as_user, home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRT_")}
    env |= settings_env | {"HOME": str(home)}
    done = subprocess.run([*as_user, *python, _AS_OTHER_USER], cwd=home, env=env,
                          capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stderr
    pids, outcome = (json.loads(line) for line in done.stdout.splitlines()[-2:])
    assert set(pids) == {"nats", "postgres", "redis"}
    assert outcome == {"nats": "stopped", "postgres": "stopped", "redis": "stopped"}
    assert (home / "state" / "postgres").stat().st_uid == user.pw_uid
