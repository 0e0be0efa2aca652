"""pytest fixtures shared by every test folder (loaded by the root conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tokenrt_testkit.stack import Stack, stack_env


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The session's stack; tests isolate themselves by unique tenant ids, not restarts."""
    running = Stack(stack_env(tmp_path_factory.mktemp("stack")))
    try:
        running.up()
        yield running
    finally:
        running.down()
