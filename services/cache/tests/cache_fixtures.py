"""Requests and answers for the cache tests."""

from __future__ import annotations

import uuid

from tokenrt.v1 import cache_pb2, common_pb2


def tenant(org: str = "acme", project: str = "web", user: str = "") -> common_pb2.Tenant:
    return common_pb2.Tenant(org_id=org, project_id=project, user_id=user)


def unique_org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


def request(question: str = "What does foo() return?", *, model: str = "gpt-4o-mini",
            system: str = "You are a coding assistant.", temperature: float | None = 0.0,
            ) -> cache_pb2.CacheableRequest:
    req = cache_pb2.CacheableRequest(model=model)
    req.messages.add(role=common_pb2.ROLE_SYSTEM).content.add(text=system)
    req.messages.add(role=common_pb2.ROLE_USER).content.add(text=question)
    if temperature is not None:
        req.sampling.temperature = temperature
    return req


def answer(text: str = "It returns 42.", *, input_tokens: int = 120, output_tokens: int = 30,
           cost_nusd: int = 51_000) -> cache_pb2.CachedResponse:
    msg = common_pb2.Message(role=common_pb2.ROLE_ASSISTANT,
                             content=[common_pb2.ContentPart(text=text)])
    return cache_pb2.CachedResponse(
        message=msg, finish_reason=common_pb2.FINISH_REASON_STOP,
        usage=common_pb2.Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        cost_nusd=cost_nusd, served_model="gpt-4o-mini", provider=common_pb2.PROVIDER_OPENAI,
        origin_request_id="req-1")


def lookup(t: common_pb2.Tenant, req: cache_pb2.CacheableRequest,
           **policy: object) -> cache_pb2.LookupRequest:
    return cache_pb2.LookupRequest(tenant=t, request=req, policy=common_pb2.CachePolicy(**policy))


def store(t: common_pb2.Tenant, req: cache_pb2.CacheableRequest | None,
          resp: cache_pb2.CachedResponse, *, key: str = "", **policy: object
          ) -> cache_pb2.StoreRequest:
    r = cache_pb2.StoreRequest(tenant=t, key=key, response=resp,
                               policy=common_pb2.CachePolicy(**policy))
    if req is not None:
        r.request.CopyFrom(req)
    return r
