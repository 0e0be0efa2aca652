"""Run the cache service: `python -m tokenrt_cache` or `tokenrt serve cache`."""

from tokenrt.v1 import cache_pb2_grpc
from tokenrt_cache.api import CacheApi
from tokenrt_common.server import ServiceSpec, run, servicer

SPEC = ServiceSpec(
    name="cache",
    needs=frozenset({"redis"}),
    build=lambda runtime: [servicer(CacheApi(runtime), cache_pb2_grpc)],
)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
