"""`tokenrt budget` against a real budget process (run as `python -m tokenrt_budget.cli`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from tokenrt.v1 import budget_pb2
from tokenrt.v1.budget_pb2_grpc import BudgetServiceStub

from .conftest import BudgetEnv, chain, new_org


async def cli(be: BudgetEnv, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(be.env, TOKENRT_BUDGET_ADDR=be.procs[0].address)  # type: ignore[attr-defined]
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "tokenrt_budget.cli", "budget", *args], env=env,
        text=True, capture_output=True, timeout=60)


async def test_set_status_list_reset(stub: BudgetServiceStub, module_budget: BudgetEnv) -> None:
    org = new_org()
    done = await cli(module_budget, "set", "--scope", f"project:{org}/web", "--metric", "cost",
                     "--period", "month", "--limit", "50.25", "--action", "deny", "--warn",
                     "0.5", "--tz", "Europe/Berlin", "--json")
    assert done.returncode == 0, done.stderr
    saved = json.loads(done.stdout)
    assert saved["limit"] == str(50_250_000_000) and saved["warningThresholdBp"] == 5000
    assert saved["timeZone"] == "Europe/Berlin"
    r = await stub.Reserve(budget_pb2.ReserveRequest(chain=chain(org),
                                                     estimated_cost_nusd=30 * 10**9))
    await stub.Commit(budget_pb2.CommitRequest(reservation_id=r.reservation_id,
                                               actual_cost_nusd=30 * 10**9))
    st = await cli(module_budget, "status", "--scope", f"project:{org}/web", "--json")
    [state] = json.loads(st.stdout)["limits"]
    assert state["used"] == str(30 * 10**9) and state["level"] == "BUDGET_LEVEL_WARNING"
    text = await cli(module_budget, "status", "--scope", f"project:{org}/web")
    assert "$30" in text.stdout and "$50.25" in text.stdout and "warning" in text.stdout
    listed = await cli(module_budget, "list", "--org", org, "--json")
    assert [x["limitId"] for x in json.loads(listed.stdout)] == [saved["limitId"]]
    reset = await cli(module_budget, "reset", "--scope", f"project:{org}/web")
    assert reset.returncode == 0 and "reset 1 limit" in reset.stdout
    st = await cli(module_budget, "status", "--scope", f"project:{org}/web", "--json")
    assert json.loads(st.stdout)["limits"][0].get("used", "0") == "0"


async def test_bad_arguments_say_what_to_fix(stub: BudgetServiceStub,
                                             module_budget: BudgetEnv) -> None:
    bad = await cli(module_budget, "set", "--scope", "team:acme", "--metric", "tokens",
                    "--period", "day", "--limit", "10", "--action", "deny")
    assert bad.returncode == 2 and "org, project, user" in bad.stderr
    neg = await cli(module_budget, "set", "--scope", "org:acme", "--metric", "cost",
                    "--period", "day", "--limit", "-3", "--action", "deny")
    assert neg.returncode == 1 and "INVALID_ARGUMENT" in neg.stderr and "limit.limit" in neg.stderr
    frac = await cli(module_budget, "set", "--scope", "org:acme", "--metric", "tokens",
                     "--period", "day", "--limit", "1.5", "--action", "deny")
    assert frac.returncode == 2 and "whole number" in frac.stderr
    missing = await cli(module_budget, "reset", "--scope", "org:acme", "--limit-id", "lim_x")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
