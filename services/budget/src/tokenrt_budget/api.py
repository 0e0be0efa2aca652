"""gRPC servicer of the budget service: protobuf in, domain calls, protobuf and status out.

Not built yet (issue #4): every RPC answers UNIMPLEMENTED with a message saying so.
"""

from tokenrt.v1 import budget_pb2_grpc
from tokenrt_common.server import Runtime


class BudgetApi(budget_pb2_grpc.BudgetServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
