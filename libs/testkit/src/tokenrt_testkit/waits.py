"""Waiting, in tests, for what services settle off the request's path."""

from __future__ import annotations

import asyncio

from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2


async def settled_limit(budget: budget_pb2_grpc.BudgetServiceStub, scope: common_pb2.Scope,
                        within: float = 10.0) -> common_pb2.LimitState:
    """The scope's one limit once a request's reservation is settled: something used and
    nothing reserved (the router commits off the request's path), or its state after
    `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        [state] = (await budget.Status(budget_pb2.StatusRequest(scope=scope),
                                       timeout=5)).limits
        if (state.used and not state.reserved) or loop.time() > deadline:
            return state
        await asyncio.sleep(0.1)
