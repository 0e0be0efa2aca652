"""Run the router service: `python -m tokenrt_router` or `tokenrt serve router`."""

from tokenrt.v1 import router_pb2_grpc
from tokenrt_common.server import ServiceSpec, run, servicer
from tokenrt_router.api import RouterApi

SPEC = ServiceSpec(
    name="router",
    needs=frozenset({"postgres", "nats"}),
    build=lambda runtime: [servicer(RouterApi(runtime), router_pb2_grpc)],
)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
