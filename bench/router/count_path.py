"""The router's own CPU on the counting path for an IDE-shaped request, in process.

Builds what the router builds for each request of `cpu_profile.py --ide` (the same ~150 KB
of files and a new question): the counter request, its weight for the batcher and the
serialised `CountMessagesBatch` (what grpc.aio sends), once with the full content (the
router before a26ea73) and once through `ByReference` with the files already known (after).
CPU per request from `time.process_time`, so other processes' load enters it little.

Run: `.venv/bin/python bench/router/count_path.py [--requests 2000]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_profile import ide_files  # noqa: E402

from tokenrt.v1 import common_pb2 as T  # noqa: E402
from tokenrt.v1 import counter_pb2, router_pb2  # noqa: E402
from tokenrt_counter.client import ByReference  # noqa: E402

MODEL = "sim/gpt-4o-mini"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    files = ide_files()
    requests = [router_pb2.CompleteRequest(messages=[
        T.Message(role=T.ROLE_SYSTEM, content=[T.ContentPart(text="You are a coding assistant.")]),
        *files, T.Message(role=T.ROLE_USER, content=[T.ContentPart(text=f"Question {i}?")])])
        for i in range(args.requests)]
    helper = ByReference(None)  # type: ignore[arg-type]  # no call is made

    def counter_request(r: router_pb2.CompleteRequest) -> counter_pb2.CountMessagesRequest:
        return counter_pb2.CountMessagesRequest(model=MODEL, messages=r.messages, tools=r.tools,
                                                sampling=r.sampling)

    def full(r: router_pb2.CompleteRequest) -> int:
        sent = counter_request(r)
        sent.ByteSize()  # the batcher's weight
        return len(counter_pb2.CountMessagesBatchRequest(requests=[sent]).SerializeToString())

    def by_reference(r: router_pb2.CompleteRequest) -> int:
        sent = helper.by_reference(counter_request(r))
        sent.ByteSize()
        helper._sent_in_full(sent)  # what count_messages_batch does after the answer
        return len(counter_pb2.CountMessagesBatchRequest(requests=[sent]).SerializeToString())

    by_reference(requests[0])  # the files are now "sent in full before"
    print(f"load average {os.getloadavg()[0]:.2f}")
    for name, step in (("full", full), ("by reference", by_reference)) * 2:
        t0 = time.process_time()
        for r in requests:
            size = step(r)
        per = (time.process_time() - t0) / len(requests) * 1e6
        print(f"{name:>12}: {per:7.1f} us CPU per request, {size} bytes to the counter")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
