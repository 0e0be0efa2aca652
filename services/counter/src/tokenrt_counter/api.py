"""gRPC servicer of the counter service: protobuf in, domain calls, protobuf and status out.

Not built yet (issue #3): every RPC answers UNIMPLEMENTED with a message saying so.
"""

from tokenrt.v1 import counter_pb2_grpc
from tokenrt_common.server import Runtime


class CounterApi(counter_pb2_grpc.CounterServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
