"""gRPC servicer of the cache service: protobuf in, domain calls, protobuf and status out.

Not built yet (issue #6): every RPC answers UNIMPLEMENTED with a message saying so.
"""

from tokenrt.v1 import cache_pb2_grpc
from tokenrt_common.server import Runtime


class CacheApi(cache_pb2_grpc.CacheServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
