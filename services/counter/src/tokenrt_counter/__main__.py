"""Run the counter service: `python -m tokenrt_counter` or `tokenrt serve counter`."""

from tokenrt.v1 import counter_pb2_grpc
from tokenrt_common.server import ServiceSpec, run, servicer

from tokenrt_counter.api import CounterApi

SPEC = ServiceSpec(
    name="counter",
    needs=frozenset({"redis"}),
    build=lambda runtime: [servicer(CounterApi(runtime), counter_pb2_grpc)],
)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
