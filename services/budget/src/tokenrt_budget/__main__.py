"""Run the budget service: `python -m tokenrt_budget` or `tokenrt serve budget`."""

from tokenrt.v1 import budget_pb2_grpc
from tokenrt_budget.api import BudgetApi
from tokenrt_common.server import ServiceSpec, run, servicer

SPEC = ServiceSpec(
    name="budget",
    needs=frozenset({"redis", "postgres"}),
    build=lambda runtime: [servicer(BudgetApi(runtime), budget_pb2_grpc)],
)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
