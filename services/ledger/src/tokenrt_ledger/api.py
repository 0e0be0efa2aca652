"""gRPC servicer of the ledger service: protobuf in, domain calls, protobuf and status out.

Not built yet (issue #5): every RPC answers UNIMPLEMENTED with a message saying so.
"""

from tokenrt.v1 import ledger_pb2_grpc
from tokenrt_common.server import Runtime


class LedgerApi(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
