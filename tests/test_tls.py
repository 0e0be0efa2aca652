"""mTLS between real service processes, switched on by settings (TOKENRT_TLS_MODE=mtls).

A budget and a ledger run with certificates from a CA made here. The ledger's Reconcile
calls the budget, so a successful Reconcile proves the service-to-service channel is mTLS
both ways; a caller with the CA but without a client certificate is refused; the test kit
and `tokenrt status` still see both SERVING. Every other test runs with TLS off.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2, ledger_pb2, ledger_pb2_grpc
from tokenrt_common.client import open_sync_channel
from tokenrt_common.settings import load_settings
from tokenrt_testkit.pki import Authority
from tokenrt_testkit.procs import ServiceProcess, start_service
from tokenrt_testkit.stack import ROOT, TOKENRT, stack_env


@pytest.fixture(scope="module")
def mtls_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    folder = tmp_path_factory.mktemp("mtls")
    ca = Authority(folder / "pki")
    env = stack_env(folder / "state")
    env.update(ca.env(ca.issue("service")))
    started: list[ServiceProcess] = []
    try:
        for name in ("ledger", "budget"):
            started.append(start_service(name, env, folder / f"{name}.log"))
        yield {"env": env, "ca": ca, "client": ca.issue("client")}
    finally:
        for proc in started:
            proc.stop()


def test_a_call_with_a_client_certificate_succeeds_and_reaches_the_other_service(
    mtls_pair: dict[str, object],
) -> None:
    env: dict[str, str] = mtls_pair["env"]  # type: ignore[assignment]
    settings = load_settings(env)
    org = f"tls-{uuid.uuid4().hex[:8]}"
    scope = common_pb2.Scope(kind=common_pb2.SCOPE_KIND_ORG, org_id=org)
    with open_sync_channel(settings.endpoint("budget").address, settings) as channel:
        budget = budget_pb2_grpc.BudgetServiceStub(channel)
        listed = budget.ListLimits(budget_pb2.ListLimitsRequest(scope=scope), timeout=10)
        assert list(listed.limits) == []
    with open_sync_channel(settings.endpoint("ledger").address, settings) as channel:
        ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        # Reconcile asks the budget for its limits over the ledger's own mTLS channel.
        reply = ledger.Reconcile(ledger_pb2.ReconcileRequest(scope=scope), timeout=20)
        assert list(reply.rows) == []


@pytest.mark.parametrize("service", ["budget", "ledger"])
def test_a_call_without_a_client_certificate_is_refused(
    mtls_pair: dict[str, object], service: str,
) -> None:
    env: dict[str, str] = mtls_pair["env"]  # type: ignore[assignment]
    ca: Authority = mtls_pair["ca"]  # type: ignore[assignment]
    address = load_settings(env).endpoint(service).address
    bare = grpc.ssl_channel_credentials(root_certificates=ca.ca.cert.read_bytes())
    for channel in (grpc.secure_channel(address, bare), grpc.insecure_channel(address)):
        with channel, pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                      timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tokenrt_status_speaks_mtls(mtls_pair: dict[str, object]) -> None:
    env: dict[str, str] = mtls_pair["env"]  # type: ignore[assignment]
    result = subprocess.run([TOKENRT, "status", "--json"], env=env, cwd=ROOT, text=True,
                            capture_output=True, timeout=120)
    services = json.loads(result.stdout)["services"]
    assert services["budget"]["health"] == "SERVING", result.stderr
    assert services["ledger"]["health"] == "SERVING", result.stderr
    assert services["counter"]["health"] == "UNREACHABLE"  # not started here


def test_status_without_the_client_certificate_sees_nothing(
    mtls_pair: dict[str, object], tmp_path: Path,
) -> None:
    env = {k: v for k, v in mtls_pair["env"].items()  # type: ignore[attr-defined]
           if not k.startswith("TOKENRT_TLS_")}
    result = subprocess.run([TOKENRT, "status", "--json"], env=env, cwd=ROOT, text=True,
                            capture_output=True, timeout=120)
    services = json.loads(result.stdout)["services"]
    assert services["budget"]["health"] == "UNREACHABLE"
