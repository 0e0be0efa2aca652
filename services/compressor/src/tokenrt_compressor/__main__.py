"""Run the compressor service: `python -m tokenrt_compressor` or `tokenrt serve compressor`."""

from tokenrt.v1 import compressor_pb2_grpc
from tokenrt_common.server import ServiceSpec, run, servicer
from tokenrt_compressor.api import CompressorApi

SPEC = ServiceSpec(
    name="compressor",
    needs=frozenset({"redis"}),
    build=lambda runtime: [servicer(CompressorApi(runtime), compressor_pb2_grpc)],
)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
