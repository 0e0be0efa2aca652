"""gRPC servicer of the compressor service: protobuf in, domain calls, protobuf and status out.

Not built yet (issue #7): every RPC answers UNIMPLEMENTED with a message saying so.
"""

from tokenrt.v1 import compressor_pb2_grpc
from tokenrt_common.server import Runtime


class CompressorApi(compressor_pb2_grpc.CompressorServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
