"""Run the ledger service: `python -m tokenrt_ledger` or `tokenrt serve ledger`."""

from tokenrt.v1 import ledger_pb2_grpc
from tokenrt_common.server import ServiceSpec, run, servicer

from tokenrt_ledger.api import LedgerApi

SPEC = ServiceSpec(
    name="ledger",
    needs=frozenset({"nats", "postgres"}),
    build=lambda runtime: [servicer(LedgerApi(runtime), ledger_pb2_grpc)],
)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
