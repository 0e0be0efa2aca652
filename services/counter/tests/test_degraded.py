"""Redis away: counting goes on, calibration says UNAVAILABLE; bad settings name the key."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from counter_fixtures import start_counter, stop
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenrt.v1 import common_pb2 as c
from tokenrt.v1 import counter_pb2 as pb
from tokenrt.v1 import counter_pb2_grpc
from tokenrt_common.settings import SettingsError, load_settings
from tokenrt_testkit.stack import free_ports


async def test_counting_survives_redis_being_away(tmp_path: Path) -> None:
    (dead,) = free_ports(1)
    proc = start_counter(tmp_path, ready=False,
                         TOKENRT_REDIS_URL=f"redis://127.0.0.1:{dead}/0",
                         TOKENRT_DEPENDENCY_TIMEOUT_SECONDS="0.5")
    try:
        async with grpc.aio.insecure_channel(proc.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            stub = counter_pb2_grpc.CounterServiceStub(channel)
            got = await stub.CountText(pb.CountTextRequest(model="gpt-4o", text="still here"),
                                       timeout=5)
            assert got.tokens == 2
            estimate = await stub.CountText(pb.CountTextRequest(model="claude-haiku-4-5",
                                                                text="still here"), timeout=5)
            assert estimate.accuracy.source == c.COUNT_SOURCE_HEURISTIC
            sample = pb.CalibrationSample(
                model="claude-haiku-4-5", counted_input_tokens=10, reported_input_tokens=11,
                features=pb.ScriptFeatures(latin_chars=30, whitespace_chars=5, message_count=1))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Calibrate(pb.CalibrateRequest(samples=[sample]), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "retry later" in err.value.details()
        assert proc.process.poll() is None  # no crash
    finally:
        stop(proc)


@pytest.mark.parametrize(("env", "needle"), [
    ({"TOKENRT_COUNTER_MAX_REQUEST_BYTES": str(64 << 20)}, "TOKENRT_COUNTER_MAX_REQUEST_BYTES"),
    ({"TOKENRT_COUNTER_WORKERS": "0"}, "TOKENRT_COUNTER_WORKERS"),
    ({"TOKENRT_COUNTER_CACHE_BYTES": "-1"}, "TOKENRT_COUNTER_CACHE_BYTES"),
    ({"TOKENRT_PRICING_OVERRIDES_PATH": "/no/such.yaml"}, "TOKENRT_PRICING_OVERRIDES_PATH"),
])
def test_bad_counter_settings_name_the_key(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        load_settings(env)
