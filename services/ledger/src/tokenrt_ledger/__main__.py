"""Run the ledger service: `python -m tokenrt_ledger` or `tokenrt serve ledger`."""

from tokenrt.v1 import ledger_pb2_grpc
from tokenrt_common.server import Runtime, Servicer, ServiceSpec, run, servicer
from tokenrt_ledger.api import LedgerApi
from tokenrt_ledger.service import Ledger


def build(runtime: Runtime) -> list[Servicer]:
    ledger = Ledger(runtime)
    runtime.spawn(ledger.run(), name="ledger")
    return [servicer(LedgerApi(ledger), ledger_pb2_grpc)]


SPEC = ServiceSpec(name="ledger", needs=frozenset({"nats", "postgres"}), build=build)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
