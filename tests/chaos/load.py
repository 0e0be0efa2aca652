"""A steady load on the router's gRPC Complete and StreamComplete, from a thread of its own
(so that the test's thread may block on stopping and starting processes meanwhile).

Open loop: a request starts every 1/rate seconds whatever the answers do, round robin over
the tenants; 3 in 10 are streams, 1 in 10 repeats the tenant's phase prompt (a cache hit
once stored). Every request has its own id and a client deadline; each outcome keeps what
the caller saw: the status, the time it took, and for an answer its event id, tokens and
cost.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import grpc

from tokenrt.v1 import common_pb2, router_pb2, router_pb2_grpc

from .stack import Tenant

T = common_pb2
MODEL = "sim/gpt-4o-mini"
MAX_OUTPUT = 32
# After the router was away, reconnect within a second (gRPC's default backoff grows to
# 120 s, and calls fail UNAVAILABLE meanwhile although the router is back): what an IDE
# backend that wants to recover quickly configures too.
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 1000)]


@dataclass
class Outcome:
    request_id: str
    org: str
    stream: bool
    started: float  # time.monotonic()
    elapsed: float
    code: str  # "OK" or the gRPC status name
    detail: str = ""
    event_id: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nusd: int = 0
    cache_hit: bool = False

    @property
    def ok(self) -> bool:
        return self.code == "OK"


class LoadGenerator:
    def __init__(self, address: str, tenants: tuple[Tenant, ...], user: str, rate: float,
                 deadline_s: float) -> None:
        self.address = address
        self.tenants = tenants
        self.user = user
        self.rate = rate
        self.deadline_s = deadline_s
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{user}", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[Outcome]:
        """Stop starting requests, wait for those in flight (each bounded by its deadline)."""
        self._stop.set()
        self._thread.join(self.deadline_s + 30)
        if self._thread.is_alive():
            raise AssertionError("the load generator did not finish its requests in time")
        if self._error is not None:
            raise self._error
        return self.outcomes

    def first_ok_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the start of the first answered request started after it."""
        starts = [o.started for o in list(self.outcomes) if o.ok and o.started >= moment]
        return min(starts) - moment if starts else None

    # --- the thread ---

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to stop()
            self._error = exc

    async def _main(self) -> None:
        async with grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS) as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            tasks: set[asyncio.Task[None]] = set()
            n = 0
            t0 = time.monotonic()
            while not self._stop.is_set():
                tenant = self.tenants[n % len(self.tenants)]
                task = asyncio.create_task(self._one(stub, tenant, n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
                await asyncio.sleep(max(0.0, t0 + n / self.rate - time.monotonic()))
            if tasks:
                await asyncio.gather(*tasks)

    async def once(self, tenant: Tenant, n: int) -> Outcome:
        """One request of the load, on a channel of its own."""
        async with grpc.aio.insecure_channel(self.address) as channel:
            await self._one(router_pb2_grpc.RouterServiceStub(channel), tenant, n)
        return self.outcomes[-1]

    def _request(self, tenant: Tenant, n: int) -> router_pb2.CompleteRequest:
        if n % 10 == 9:
            text = f"chaos {self.user}: what does a usage ledger promise?"
        else:
            text = f"chaos {self.user} #{n}: explain exactly-once delivery in one line"
        return router_pb2.CompleteRequest(
            request_id=f"{self.user}-{n}", user_id=self.user, session_id=f"s-{self.user}",
            messages=[T.Message(role=T.ROLE_USER, content=[T.ContentPart(text=text)])],
            sampling=T.SamplingParams(temperature=0.0, max_output_tokens=MAX_OUTPUT),
            preferences=router_pb2.RoutingPreferences(forced_model=MODEL))

    async def _one(self, stub: router_pb2_grpc.RouterServiceStub, tenant: Tenant,
                   n: int) -> None:
        req = self._request(tenant, n)
        stream = n % 10 in (2, 5, 8)
        meta = (("authorization", f"Bearer {tenant.key}"),)
        started = time.monotonic()
        out = Outcome(req.request_id, tenant.org, stream, started, 0.0, "OK")
        try:
            if stream:
                done = None
                async for msg in stub.StreamComplete(
                        router_pb2.StreamCompleteRequest(request=req), metadata=meta,
                        timeout=self.deadline_s):
                    if msg.HasField("done"):
                        done = msg.done
                if done is None:
                    out.code, out.detail = "NO_DONE", "the stream ended without its Completion"
                else:
                    _fill(out, done)
            else:
                reply = await stub.Complete(req, metadata=meta, timeout=self.deadline_s)
                _fill(out, reply.completion)
        except grpc.aio.AioRpcError as exc:
            out.code, out.detail = exc.code().name, exc.details() or ""
        out.elapsed = time.monotonic() - started
        self.outcomes.append(out)


def _fill(out: Outcome, c: router_pb2.Completion) -> None:
    out.event_id = c.event_id
    out.input_tokens = c.usage.input_tokens
    out.output_tokens = c.usage.output_tokens
    out.cost_nusd = c.cost_nusd
    out.cache_hit = c.cache.hit
