"""examples/usage_consumer.py: the analytics consumer prints spend per model, exactly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from nats.aio.client import Client as NATS

from tokenrt_usage import ensure_streams
from tokenrt_usage.testing import make_event

from .conftest import NATS_URL, LedgerEnv

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "usage_consumer.py"


async def test_example_prints_live_spend_per_model(ledger: LedgerEnv, nc: NATS) -> None:
    await ensure_streams(nc.jetstream(), ledger.spec)
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--nats-url", NATS_URL, "--prefix",
         ledger.spec.subject_prefix, "--exit-after", "3"],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = await asyncio.to_thread(proc.stdout.readline)
    assert first.startswith("# live spend per model")
    pub = ledger.publisher()
    await pub.start()
    assert await pub.wait_ready(within=10)
    await pub.publish(make_event(org_id="a.b c", model_index=0, cost_nusd=1_250_000_000))
    await pub.publish(make_event(org_id="x", model_index=0, cost_nusd=250_000_000))
    await pub.publish(make_event(org_id="y", model_index=1, cost_nusd=7))
    await pub.close()
    out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["gpt-4o-mini"][1] == "2" and rows["gpt-4o-mini"][4] == "$1.500000000"
    assert rows["claude-sonnet-4-5"][4] == "$0.000000007"  # exact to the nano-dollar
    assert rows["total"][1] == "3"
