"""gRPC servicer of the router service: protobuf in, domain calls, protobuf and status out.

Not built yet (issue #8): every RPC answers UNIMPLEMENTED with a message saying so.
"""

from tokenrt.v1 import router_pb2_grpc
from tokenrt_common.server import Runtime


class RouterApi(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
