"""`tokenrt usage` (run as `python -m tokenrt_ledger.cli`) against a real ledger and NATS."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from collections import defaultdict

from tokenrt_usage import Publisher, StreamSpec
from tokenrt_usage.testing import make_event

from .conftest import END, NATS_URL, START, loaded_env


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tokenrt_ledger.cli", "usage", *args],
                          env=loaded_env, capture_output=True, text=True, timeout=timeout)


RANGE = ("--since", START.isoformat(), "--until", END.isoformat())


async def test_usage_by_model_as_json_csv_and_table(loaded) -> None:  # type: ignore[no-untyped-def]
    _, events = loaded
    want: dict[str, int] = defaultdict(int)
    for e in events:
        if e.org_id == "org0":
            want[e.served_model] += e.cost_nusd
    done = await asyncio.to_thread(cli, "--org", "org0", *RANGE, "--group-by", "model", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert {r["model"]: r["cost_nusd"] for r in answer["rows"]} == dict(want)
    assert answer["total"]["cost_nusd"] == sum(want.values())

    done = await asyncio.to_thread(cli, "--org", "org0", *RANGE, "--group-by", "model,day",
                                   "--csv")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert sum(int(r["cost_nusd"]) for r in rows) == sum(want.values())
    assert {r["model"] for r in rows} == set(want) and all(r["bucket_start"] for r in rows)

    done = await asyncio.to_thread(cli, "--org", "org0", *RANGE)
    assert done.returncode == 0 and done.stdout.splitlines()[0].startswith("MODEL")
    assert f"{sum(1 for e in events if e.org_id == 'org0')} requests" in done.stdout


async def test_export_jsonl_and_csv(loaded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, events = loaded
    mine = sorted((e for e in events if e.org_id == "org1" and e.project_id == "p1"),
                  key=lambda e: (e.occurred_at.ToDatetime(), e.event_id))
    done = await asyncio.to_thread(cli, "export", "--org", "org1", "--project", "p1", *RANGE)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert [x["event_id"] for x in lines] == [e.event_id for e in mine]
    assert f"exported {len(mine)} events" in done.stderr

    out = tmp_path / "usage.csv"
    done = await asyncio.to_thread(cli, "export", "--org", "org1", "--project", "p1", *RANGE,
                                   "--format", "csv", "--output", str(out))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["event_id"] for r in rows] == [e.event_id for e in mine]
    assert sum(int(r["cost_nusd"]) for r in rows) == sum(e.cost_nusd for e in mine)


async def test_tail_prints_live_events(loaded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([sys.executable, "-m", "tokenrt_ledger.cli", "usage", "tail",
                             "--org", "tail-org", "--count", "2"], env=loaded_env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = await asyncio.to_thread(proc.stdout.readline)
    assert first.startswith("# tailing")
    spec = StreamSpec(name=loaded_env["TOKENRT_USAGE_STREAM"],
                      subject_prefix=loaded_env["TOKENRT_USAGE_SUBJECT_PREFIX"],
                      dlq_subject=loaded_env["TOKENRT_USAGE_DLQ_SUBJECT"])
    pub = Publisher(NATS_URL, spec, tmp_path / "outbox.sqlite3")
    await pub.start()
    assert await pub.wait_ready(within=10)
    await pub.publish(make_event(org_id="other-org"))  # filtered out
    await pub.publish(make_event(org_id="tail-org", cost_nusd=1_500_000_000))
    await pub.publish(make_event(org_id="tail-org", model_index=1))
    await pub.close()
    rest = await asyncio.to_thread(proc.communicate, timeout=30)
    lines = rest[0].splitlines()
    assert proc.returncode == 0 and len(lines) == 2
    assert "tail-org/web" in lines[0] and "$1.5" in lines[0]
    assert "claude-sonnet-4-5" in lines[1]


async def test_bad_arguments_exit_2_with_a_message(loaded) -> None:  # type: ignore[no-untyped-def]
    done = await asyncio.to_thread(cli, "--group-by", "model,galaxy")
    assert done.returncode == 2 and "--group-by: 'galaxy' is not one of" in done.stderr
    done = await asyncio.to_thread(cli, "--since", "last tuesday")
    assert done.returncode == 2 and "--since" in done.stderr
