"""The simulator: an OpenAI Chat Completions HTTP server (JSON and SSE) for demos, tests
and benchmarks.

Timing: a JSON answer waits `latency_ms`; a stream waits `ttft_ms` before its first
chunk and then sends tokens at `tokens_per_second` (0 = as fast as possible). Per request,
headers `x-sim-latency-ms`, `x-sim-ttft-ms` and `x-sim-tps` override them.

Injected faults, by header `x-sim-fault`, by a model suffix `<model>@fault=<kind>`, or
by `POST /sim/faults {"model": M, "fault": K, "count": N}` (N requests to model M fail;
count -1 = until cleared with `DELETE /sim/faults`, which also clears `POST /sim/pace`
{"model": M, "ttft_ms": .., "tps": .., "latency_ms": ..} per-model pacing):
  429        rate limited, `Retry-After: <x-sim-retry-after or 1>` seconds
  500 / 503  server error with OpenAI's error JSON
  timeout    never answers (the client's timeout must fire)
  malformed  200 with a body that is not JSON (or a broken SSE chunk after 3 tokens)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tokenrt_router.sim.answer import Answer, Answerer

FAULTS = ("429", "500", "503", "timeout", "malformed")


@dataclass
class SimConfig:
    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    tokens_per_second: float = 0.0


@dataclass
class _Fault:
    kind: str
    count: int


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.answerer = Answerer()
        self.faults: dict[str, _Fault] = {}
        # Per-model pacing set by POST /sim/pace: {"model": M, "ttft_ms": .., "tps": ..,
        # "latency_ms": ..}; headers still win.
        self.pace: dict[str, SimConfig] = {}
        self.requests = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_post("/sim/faults", self.set_fault)
        app.router.add_delete("/sim/faults", self.clear_faults)
        app.router.add_post("/sim/pace", self.set_pace)
        app.router.add_get("/sim/stats", self.stats)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    async def set_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        kind = str(body.get("fault", ""))
        if kind not in FAULTS:
            return _error(400, f"fault must be one of {', '.join(FAULTS)}", "invalid_request_error")
        self.faults[str(body.get("model", ""))] = _Fault(kind, int(body.get("count", -1)))
        return web.json_response({"ok": True})

    async def set_pace(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.pace[str(body.get("model", ""))] = SimConfig(
            float(body.get("latency_ms", 0)), float(body.get("ttft_ms", 0)),
            float(body.get("tps", 0)))
        return web.json_response({"ok": True})

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        self.pace.clear()
        return web.json_response({"ok": True})

    def _fault_for(self, request: web.Request, model: str) -> str:
        header = request.headers.get("x-sim-fault", "")
        if header:
            return header
        base, _, suffix = model.partition("@fault=")
        if suffix:
            return suffix
        for key in (model, "*"):
            f = self.faults.get(key)
            if f is not None and f.count != 0:
                if f.count > 0:
                    f.count -= 1
                return f.kind
        return ""

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        try:
            body = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) \
                or not body.get("model"):
            return _error(400, "'model' and 'messages' are required", "invalid_request_error")
        model = str(body["model"])
        fault = self._fault_for(request, model)
        body["model"] = model.partition("@fault=")[0]
        if fault == "429":
            retry = request.headers.get("x-sim-retry-after", "1")
            return _error(429, "Rate limit reached (simulated)", "rate_limit_exceeded",
                          headers={"Retry-After": retry})
        if fault in ("500", "503"):
            return _error(int(fault), "The server had an error (simulated)", "server_error")
        if fault == "timeout":
            await asyncio.sleep(3600)
        ans = self.answerer.answer(body)
        h = request.headers
        pace = self.pace.get(body["model"], self.config)
        latency = float(h.get("x-sim-latency-ms", pace.latency_ms))
        ttft = float(h.get("x-sim-ttft-ms", pace.ttft_ms))
        tps = float(h.get("x-sim-tps", pace.tokens_per_second))
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, body["model"], ans, ttft, tps, include_usage,
                                      fault == "malformed")
        if latency > 0:
            await asyncio.sleep(latency / 1000)
        if fault == "malformed":
            return web.Response(status=200, text='{"id": "chatcmpl-sim", "choices": [',
                                content_type="application/json")
        return web.json_response(_completion(body["model"], ans))

    async def _stream(self, request: web.Request, model: str, ans: Answer, ttft: float,
                      tps: float, include_usage: bool, malformed: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        cid, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {"id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish}]}
            if include_usage:
                data["usage"] = None
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        if ttft > 0:
            await asyncio.sleep(ttft / 1000)
        await resp.write(chunk({"role": "assistant", "content": ""}))
        start = time.monotonic()
        buf: list[bytes] = []
        for i, piece in enumerate(ans.pieces):
            if malformed and i == 3:
                await resp.write(b"data: {\"id\": \"broken\n\n")
                return resp
            buf.append(chunk({"content": piece}))
            if tps > 0:
                due = start + (i + 1) / tps
                wait = due - time.monotonic()
                if wait > 0.001:
                    await resp.write(b"".join(buf))
                    buf.clear()
                    await asyncio.sleep(wait)
        if ans.tool_call is not None:
            buf.append(chunk({"tool_calls": [{"index": 0, **ans.tool_call}]}))
        buf.append(chunk({}, ans.finish_reason))
        if include_usage:
            data = {"id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [], "usage": _usage(ans)}
            buf.append(b"data: " + json.dumps(data).encode() + b"\n\n")
        buf.append(b"data: [DONE]\n\n")
        await resp.write(b"".join(buf))
        await resp.write_eof()
        return resp


def _usage(ans: Answer) -> dict[str, Any]:
    return {"prompt_tokens": ans.prompt_tokens, "completion_tokens": ans.completion_tokens,
            "total_tokens": ans.prompt_tokens + ans.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": ans.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": ans.reasoning_tokens,
                                          "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def _completion(model: str, ans: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": ans.text, "refusal": None}
    if ans.tool_call is not None:
        message["tool_calls"] = [ans.tool_call]
    return {"id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion",
            "created": int(time.time()), "model": model, "system_fingerprint": "fp_tokenrt_sim",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": ans.finish_reason}],
            "usage": _usage(ans)}


def _error(status: int, message: str, code: str,
           headers: dict[str, str] | None = None) -> web.Response:
    kind = {400: "invalid_request_error", 429: "requests"}.get(status, "server_error")
    return web.json_response({"error": {"message": message, "type": kind, "param": None,
                                        "code": code}}, status=status, headers=headers)


async def serve(host: str, port: int, config: SimConfig) -> None:
    runner = web.AppRunner(Simulator(config).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
