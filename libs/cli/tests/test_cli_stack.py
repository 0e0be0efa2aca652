"""`tokenrt up / status / down` as a person runs them: real processes, all infrastructure
embedded on closed ports, a state folder of the test's own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tokenrt_cli import demokey, health, simulator
from tokenrt_cli.embedded import port_is_free
from tokenrt_cli.probe import host_port
from tokenrt_common.settings import SERVICES
from tokenrt_testkit.stack import TOKENRT, free_ports, stack_env

pytestmark = pytest.mark.timeout(240)

INFRA_KEYS = {"nats": "TOKENRT_NATS_URL", "postgres": "TOKENRT_POSTGRES_DSN",
              "redis": "TOKENRT_REDIS_URL"}


def _all_ports(env: dict[str, str]) -> list[int]:
    ports = [host_port(kind, env[key])[1] for kind, key in INFRA_KEYS.items()]
    ports.append(simulator.host_port(env["TOKENRT_ROUTER_SIM_BASE_URL"])[1])
    for name in SERVICES:
        ports.append(int(env[f"TOKENRT_{name.upper()}_ADDR"].rsplit(":", 1)[1]))
        ports.append(int(env[f"TOKENRT_{name.upper()}_METRICS_PORT"]))
    return ports


def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 150.0
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TOKENRT, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _all_free(ports: list[int]) -> bool:
    return all(port_is_free("127.0.0.1", port) for port in ports)


def _status(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    done = run_cli("status", "--json", env=env, cwd=cwd, timeout=30)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokenrt: "), done.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(("key", "value"), [
    ("TOKENRT_NATS_URL", "http://x"),
    ("TOKENRT_POSTGRES_DSN", "postgresql://db:notaport/x"),
    ("TOKENRT_FOO", "1"),
    ("TOKENRT_COUNTER_METRICS_PORT", "lots"),
])
@pytest.mark.parametrize("command", [("up", "--detach"), ("status", "--json"), ("down",)])
def test_bad_settings_stop_with_one_line_naming_the_key(
        tmp_path: Path, key: str, value: str, command: tuple[str, ...]) -> None:
    env = stack_env(tmp_path / "state", **{key: value})
    _one_line_error(run_cli(*command, env=env, cwd=tmp_path, timeout=30), 2, key)
    assert not (tmp_path / "state" / "stack.json").exists()


def test_a_service_port_in_use_stops_up_before_anything_starts(
        tmp_path: Path, closed_infra_env: dict[str, str]) -> None:
    env = stack_env(Path(closed_infra_env["TOKENRT_STATE_DIR"]), **closed_infra_env)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env["TOKENRT_LEDGER_METRICS_PORT"] = str(taken.getsockname()[1])
        done = run_cli("up", "--detach", env=env, cwd=tmp_path, timeout=30)
    _one_line_error(done, 2, "TOKENRT_LEDGER_METRICS_PORT", "in use")
    assert _all_free([host_port(k, env[v])[1] for k, v in INFRA_KEYS.items()])


def test_a_remote_url_that_does_not_answer_is_named(
        tmp_path: Path, closed_infra_env: dict[str, str]) -> None:
    env = stack_env(Path(closed_infra_env["TOKENRT_STATE_DIR"]), **closed_infra_env | {
                    "TOKENRT_REDIS_URL": "redis://:hunter2@192.0.2.1:6379/0",  # TEST-NET-1
                    "TOKENRT_DEPENDENCY_TIMEOUT_SECONDS": "0.5"})
    done = run_cli("up", "--detach", env=env, cwd=tmp_path, timeout=30)
    _one_line_error(done, 1, "TOKENRT_REDIS_URL", "redis://:***@192.0.2.1:6379/0")
    assert "hunter2" not in done.stdout + done.stderr
    assert not (Path(env["TOKENRT_STATE_DIR"]) / "stack.json").exists()


def test_status_and_down_with_nothing_running(
        tmp_path: Path, closed_infra_env: dict[str, str]) -> None:
    env = stack_env(Path(closed_infra_env["TOKENRT_STATE_DIR"]), **closed_infra_env)
    report = _status(env, tmp_path)
    assert {s["health"] for s in report["services"].values()} == {"UNREACHABLE"}
    assert all(s["pid"] is None for s in report["services"].values())
    assert all(not i["answers"] and not i["embedded"] for i in report["infra"].values())
    done = run_cli("down", env=env, cwd=tmp_path, timeout=30)
    assert done.returncode == 0 and "nothing to stop" in done.stdout


def test_up_status_kill_down(embedded_stack_env: dict[str, str], tmp_path: Path) -> None:
    state = Path(embedded_stack_env["TOKENRT_STATE_DIR"])
    began = time.monotonic()
    done = run_cli("up", "--detach", env=embedded_stack_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    print(f"\ncold up --detach (first initdb): {time.monotonic() - began:.1f} s")
    for name in SERVICES:
        assert embedded_stack_env[f"TOKENRT_{name.upper()}_ADDR"] in done.stdout
    recorded = json.loads((state / "stack.json").read_text())
    assert set(recorded["services"]) == set(SERVICES)
    assert all(e["embedded"] for e in recorded["infra"].values())

    report = _status(embedded_stack_env, tmp_path)
    assert {n: s["health"] for n, s in report["services"].items()} == dict.fromkeys(
        SERVICES, "SERVING")
    assert all(i["answers"] and i["embedded"] for i in report["infra"].values())
    pids = {n: s["pid"] for n, s in report["services"].items()}
    assert all(isinstance(pid, int) for pid in pids.values())

    again = run_cli("up", "--detach", env=embedded_stack_env, cwd=tmp_path, timeout=30)
    _one_line_error(again, 1, "already running")

    os.kill(pids["cache"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (report := _status(embedded_stack_env, tmp_path))["services"]["cache"]["health"] != "UNREACHABLE":
        assert time.monotonic() < deadline, report
        time.sleep(0.2)
    assert report["services"]["cache"]["pid"] is None
    assert report["services"]["counter"]["health"] == "SERVING"

    done = run_cli("down", env=embedded_stack_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "cache: not running" in done.stdout and "embedded postgres: stopped" in done.stdout
    assert not (state / "stack.json").exists()
    assert _all_free(_all_ports(embedded_stack_env))
    assert not any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in pids.values())

    began = time.monotonic()
    done = run_cli("up", "--detach", env=embedded_stack_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    print(f"warm up --detach (state folder reused): {time.monotonic() - began:.1f} s")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except OSError:
        return False


def test_foreground_up_stops_everything_on_sigterm(embedded_stack_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    proc = subprocess.Popen([TOKENRT, "up"], env=embedded_stack_env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        output = ""
        deadline = time.monotonic() + 90
        while "running in the foreground" not in output:
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, output
            output += line
        assert _status(embedded_stack_env, tmp_path)["services"]["router"]["health"] == "SERVING"
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output + rest
        assert "embedded nats: stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (Path(embedded_stack_env["TOKENRT_STATE_DIR"]) / "stack.json").exists()
    assert _all_free(_all_ports(embedded_stack_env))


def test_a_service_that_dies_at_start_is_named_and_everything_stops(
        embedded_stack_env: dict[str, str], tmp_path: Path) -> None:
    # A real process that fails: a `tokenrt_budget` earlier on the path that exits with 3.
    fake = tmp_path / "fake" / "tokenrt_budget"
    fake.mkdir(parents=True)
    # Only its __main__ is fake: the rest (the `tokenrt budget` command the CLI loads)
    # still comes from the real package, found further down the path.
    (fake / "__init__.py").write_text(
        "from pkgutil import extend_path\n__path__ = extend_path(__path__, __name__)\n")
    (fake / "__main__.py").write_text("import sys\nprint('budget: cannot go on')\nsys.exit(3)\n")
    env = embedded_stack_env | {"PYTHONPATH": str(tmp_path / "fake")}
    done = run_cli("up", "--detach", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "budget exited with code 3" in done.stderr and "cannot go on" in done.stderr
    assert not (Path(embedded_stack_env["TOKENRT_STATE_DIR"]) / "stack.json").exists()
    assert _all_free(_all_ports(embedded_stack_env))


async def test_up_uses_the_machines_servers_creates_the_database_and_down_leaves_them(
        tmp_path: Path, tiktoken_env: dict[str, str]) -> None:
    db = f"tokenrt_cli_up_{os.getpid()}"
    sim_port, http_port = free_ports(2)
    env = stack_env(tmp_path / "state",
                    TOKENRT_NATS_URL="nats://127.0.0.1:4222",
                    TOKENRT_POSTGRES_DSN=f"postgresql://postgres@127.0.0.1:5432/{db}",
                    TOKENRT_REDIS_URL="redis://127.0.0.1:6379/0",
                    TOKENRT_ROUTER_SIM_BASE_URL=f"http://127.0.0.1:{sim_port}/v1",
                    TOKENRT_ROUTER_HTTP_ADDR=f"127.0.0.1:{http_port}") | tiktoken_env
    state = tmp_path / "state"
    try:
        done = run_cli("up", "--detach", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr + done.stdout
        assert "starting embedded" not in done.stdout
        report = _status(env, tmp_path)
        assert all(i["answers"] and not i["embedded"] for i in report["infra"].values())
        # The simulator is part of the stack, and the router got a demo key.
        assert report["sim"]["answers"] and report["sim"]["started"], report["sim"]
        sim_pid = report["sim"]["pid"]
        assert report["openai_base_url"] == f"http://127.0.0.1:{http_port}/v1"
        key = demokey.read_key(state)
        assert key is not None and (state / demokey.KEY_FILE).stat().st_mode & 0o777 == 0o600
        assert key not in done.stdout + done.stderr
        assert key not in "".join(p.read_text() for p in (state / "logs").glob("*.log"))
        chat = subprocess.run([TOKENRT, "chat", "--model", "sim/gpt-4o-mini", "--json", "hi"],
                              env=env | {"TOKENRT_API_KEY": key}, cwd=tmp_path, text=True,
                              capture_output=True, timeout=60)
        assert chat.returncode == 0, chat.stderr
        assert int(json.loads(chat.stdout)["usage"]["outputTokens"]) > 0
        conn = await asyncpg.connect(env["TOKENRT_POSTGRES_DSN"], timeout=5)
        await conn.close()
        done = run_cli("down", env=env, cwd=tmp_path)
        assert done.returncode == 0
        assert "postgres: left running (tokenrt did not start it)" in done.stdout
        assert "simulator: stopped" in done.stdout and not _alive(sim_pid)
        assert not any(port_is_free("127.0.0.1", port) for port in (4222, 5432, 6379))
        assert port_is_free("127.0.0.1", sim_port)
    finally:
        run_cli("down", env=env, cwd=tmp_path)
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres", timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await conn.close()


async def test_serve_runs_one_service_in_the_foreground(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "state", TOKENRT_REDIS_URL="redis://127.0.0.1:6379/0")
    address = env["TOKENRT_CACHE_ADDR"]
    proc = subprocess.Popen([TOKENRT, "serve", "cache"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while await health.check(address) != health.SERVING:
            assert proc.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
