"""Fixtures of the fuzz suite: the session stack's services, and a router with a key."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fuzz_messages, fuzz_procs (importlib mode)

from fuzz_procs import KeyedRouter, Sim, start_keyed_router, start_sim  # noqa: E402

from tokenrt_testkit.stack import Stack  # noqa: E402

FUZZ_KEY = "trk_fuzz_admin_key_0123456789"


@pytest.fixture(scope="session")
def fuzz_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    sim = start_sim(tmp_path_factory.mktemp("fuzz-sim") / "sim.log")
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def fuzz_router(stack: Stack, fuzz_sim: Sim,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedRouter]:
    router = start_keyed_router(stack, tmp_path_factory.mktemp("fuzz-router"), fuzz_sim,
                                FUZZ_KEY)
    yield router
    router.service.stop()
