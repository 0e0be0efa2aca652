"""`tokenrt cache` commands against a real cache process."""

from __future__ import annotations

import json
import subprocess
import sys

from cache_fixtures import answer, request, store, tenant, unique_org
from cache_procs import Proc

from tokenrt.v1 import cache_pb2


def cli(proc: Proc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tokenrt_cache.cli", "cache", *args],
                          env=proc.env, capture_output=True, text=True, timeout=60)


def test_stats_clear_and_config(cache: Proc) -> None:
    stub, org = cache.stub(), unique_org()
    t = tenant(org, "web")
    for q in ("one", "two"):
        assert stub.Store(store(t, request(q), answer(), tags=["docs"]), timeout=5).stored
    for q in ("one", "three"):  # a hit and a miss
        stub.Lookup(cache_pb2.LookupRequest(tenant=t, request=request(q)), timeout=5)

    shown = cli(cache, "stats", "--tenant", org, "--json")
    assert shown.returncode == 0, shown.stderr
    total = json.loads(shown.stdout)["total"]
    assert (total["hits"], total["entries"], total["savedCostNusd"]) == ("1", "2", "51000")
    table = cli(cache, "stats", "--tenant", f"{org}/web")
    assert f"{org}/web" in table.stdout and "50.00%" in table.stdout and "0.000051" in table.stdout

    cleared = cli(cache, "clear", "--tenant", f"{org}/web", "--tag", "docs")
    assert cleared.returncode == 0 and "removed 2 entries" in cleared.stdout
    assert not stub.Lookup(cache_pb2.LookupRequest(tenant=t, request=request("one")),
                           timeout=5).hit

    conf = cli(cache, "config", "--tenant", f"{org}/web", "--semantic", "on", "--ttl", "60")
    assert conf.returncode == 0 and "semantic_enabled: True" in conf.stdout
    assert "default_ttl_seconds: 60" in conf.stdout
    bad = cli(cache, "clear", "--tenant", "/web")
    assert bad.returncode == 2 and "--tenant" in bad.stderr
    refused = cli(cache, "config", "--tenant", org, "--threshold", "3")
    assert refused.returncode == 1 and "INVALID_ARGUMENT" in refused.stderr
    lexical = cli(cache, "config", "--tenant", org, "--backend", "lexical")
    assert lexical.returncode == 0 and "EMBEDDING_BACKEND_LEXICAL" in lexical.stdout
    assert "similarity_threshold: 0.8" in lexical.stdout
    no_url = cli(cache, "config", "--tenant", org, "--backend", "provider")
    assert no_url.returncode == 1 and "EMBEDDING_BACKEND_PROVIDER is not available" in no_url.stderr
