"""The fault suite's private stack (started once for the module) and its results table.

`CHAOS_LONG=1` (what `make chaos` sets) runs longer phases at a higher rate."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .stack import ChaosStack

# Tables of the module's runs, printed at the end of the session.
WRITTEN: list[tuple[Path, str]] = []

COLUMNS = ("requests", "ok", "refused", "lost", "double_counted", "mismatched", "overspend",
           "budget_drift", "hard_budget_reserved", "unclear", "late", "max_elapsed_s", "restart_s", "recovery_s",
           "serving_s", "catchup_s")


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    # The stack's data lives outside pytest's numbered tmp folders: on a machine where
    # other pytest sessions run, their clean-up removed those folders under a running stack
    # (its Postgres data included). Its logs and the results are kept in the tmp folder.
    out = tmp_path_factory.mktemp("chaos")
    stack = ChaosStack(Path(tempfile.mkdtemp(prefix="tokenrt-chaos-")))
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        if (stack.root / "logs").exists():
            shutil.copytree(stack.root / "logs", out / "logs", dirs_exist_ok=True)
        shutil.rmtree(stack.root, ignore_errors=True)
        path = out / "results.json"
        path.write_text(json.dumps({"long": bool(os.environ.get("CHAOS_LONG")),
                                    "phases": stack.results}, indent=2, default=str) + "\n")
        if stack.results:
            WRITTEN.append((path, table(stack.results)))


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}:{v}" for k, v in sorted(value.items())) or "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return "-" if value is None else str(value)


def table(results: dict[str, dict[str, Any]]) -> str:
    rows: list[tuple[str, ...]] = [("phase", *COLUMNS)]
    rows += [(phase, *(_cell(r.get(c)) for c in COLUMNS)) for phase, r in results.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     for row in rows)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not WRITTEN:
        return
    terminalreporter.section("fault suite (tests/chaos)")
    for path, text in WRITTEN:
        terminalreporter.write_line(text)
        terminalreporter.write_line(f"results: {path}")
