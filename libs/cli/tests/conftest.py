"""Fixtures of the CLI tests: infrastructure URLs on closed ports, a whole-stack environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokenrt_testkit.stack import TOKENRT, free_ports, stack_env

# Where the Makefile points TIKTOKEN_CACHE_DIR (no internet here): the counter needs it.
TIKTOKEN_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "tiktoken"


@pytest.fixture
def tiktoken_env() -> dict[str, str]:
    """TIKTOKEN_CACHE_DIR as `make test` sets it, unless the environment has it already."""
    if "TIKTOKEN_CACHE_DIR" not in os.environ and TIKTOKEN_DIR.is_dir():
        return {"TIKTOKEN_CACHE_DIR": str(TIKTOKEN_DIR)}
    return {}


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state folder outside pytest's own temporary root, which pytest keeps at mode 0700
    (and resets at each session start): as root, the embedded Postgres runs as another user
    that must be able to reach its data."""
    path = Path(tempfile.mkdtemp(prefix="tokenrt-cli-test-"))
    try:
        yield path / "state"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def closed_infra_env(state_dir: Path) -> dict[str, str]:
    """A state folder of the test's own and the three infrastructure URLs (and the
    simulator's, which `up` starts too) on closed ports."""
    nats, postgres, redis, sim = free_ports(4)
    return {
        "TOKENRT_STATE_DIR": str(state_dir),
        "TOKENRT_NATS_URL": f"nats://127.0.0.1:{nats}",
        "TOKENRT_POSTGRES_DSN": f"postgresql://postgres@127.0.0.1:{postgres}/tokenrt",
        "TOKENRT_REDIS_URL": f"redis://127.0.0.1:{redis}/0",
        "TOKENRT_ROUTER_SIM_BASE_URL": f"http://127.0.0.1:{sim}/v1",
    }


@pytest.fixture
def embedded_stack_env(tmp_path: Path, state_dir: Path, closed_infra_env: dict[str, str],
                       tiktoken_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Everything embedded, every service port free; `tokenrt down` afterwards, always."""
    env = stack_env(state_dir, **closed_infra_env) | tiktoken_env
    try:
        yield env
    finally:
        subprocess.run([TOKENRT, "down"], env=env, cwd=tmp_path, capture_output=True,
                       timeout=120, check=False)
