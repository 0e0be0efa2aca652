"""What every HTTP provider adapter shares: one keep-alive aiohttp session, JSON posts and
Server-Sent-Event streams with timeouts, and error classification for the retry policy.

429 (with Retry-After), 5xx (Anthropic's 529 included), timeouts and unparsable bodies
are retryable; 401/403/404 mean this deployment refuses us (another may not); other 4xx
are the request's fault. The API key never appears in a message: every text that came
from the provider passes through the key's `redact`.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import aiohttp

from tokenrt_router.providers.base import Failure, ProviderError
from tokenrt_router.providers.secrets import Secret

MAX_MESSAGE = 300


class HttpAdapter:
    """Base of the adapters: subclasses build bodies and parse answers."""

    def __init__(self, name: str, base_url: str, headers: Mapping[str, str],
                 secret: Secret | None = None, connect_timeout: float = 10.0,
                 pool: int = 256) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._headers = {"Content-Type": "application/json", **headers}
        self._secret = secret
        self._connect_timeout = connect_timeout
        self._pool = pool
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.base_url!r})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool, keepalive_timeout=60),
                headers=self._headers, skip_auto_headers=("User-Agent",))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def redact(self, text: str) -> str:
        return self._secret.redact(text) if self._secret is not None else text

    # -- hooks ------------------------------------------------------------------------

    def error_detail(self, payload: Any) -> tuple[str, float | None]:
        """The message in a provider's error body and a retry delay it names, if any."""
        err = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"]), None
        return "", None

    # -- calls ------------------------------------------------------------------------

    async def post_json(self, url: str, body: dict[str, Any], timeout: float) -> Any:  # noqa: ASYNC109
        """POST a JSON body and return the parsed JSON answer of a 200."""
        try:
            async with self._client().post(
                    url, data=json.dumps(body),
                    timeout=aiohttp.ClientTimeout(total=timeout,
                                                  sock_connect=self._connect_timeout)) as r:
                raw = await r.read()
                if r.status != 200:
                    raise self.status_error(r.status, raw.decode(errors="replace"), r.headers)
        except TimeoutError:
            raise ProviderError(Failure.TIMEOUT, f"{self.name}: no answer within "
                                f"{timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(Failure.UNREACHABLE, f"cannot reach {self.name}: "
                                f"{type(exc).__name__}") from None
        try:
            return json.loads(raw)  # (bytes: UTF-8, -16 or -32, as JSON allows)
        except ValueError:
            raise ProviderError(Failure.MALFORMED, f"{self.name}: the answer is not "
                                "JSON") from None

    async def post_sse(self, url: str, body: dict[str, Any],
                       timeout: float) -> AsyncGenerator[tuple[str, Any], None]:  # noqa: ASYNC109
        """POST and yield each Server-Sent Event as (event name, parsed JSON data);
        `[DONE]` comes as ("done", None). `timeout` bounds the wait for each chunk."""
        try:
            async with self._client().post(
                    url, data=json.dumps(body),
                    timeout=aiohttp.ClientTimeout(total=None,
                                                  sock_connect=self._connect_timeout,
                                                  sock_read=timeout)) as r:
                if r.status != 200:
                    raise self.status_error(r.status, await r.text(), r.headers)
                event, data = "", list[bytes]()
                async for raw in r.content:
                    line = raw.rstrip(b"\r\n")
                    if not line:
                        if data:
                            yield self._event(event, b"\n".join(data))
                        event, data = "", list[bytes]()
                    elif line.startswith(b"data:"):
                        data.append(line[5:].lstrip(b" "))
                    elif line.startswith(b"event:"):
                        event = line[6:].strip().decode()
                if data:
                    yield self._event(event, b"\n".join(data))
        except TimeoutError:
            raise ProviderError(Failure.TIMEOUT, f"{self.name}: no chunk within "
                                f"{timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(Failure.UNREACHABLE, f"stream from {self.name} broke: "
                                f"{type(exc).__name__}") from None

    def _event(self, event: str, data: bytes) -> tuple[str, Any]:
        if data.strip() == b"[DONE]":
            return "done", None
        try:
            return event, json.loads(data)
        except ValueError:
            raise ProviderError(Failure.MALFORMED, f"{self.name}: a stream event is not "
                                "JSON") from None

    def status_error(self, status: int, text: str,
                     headers: Mapping[str, str] | None = None) -> ProviderError:
        """Classify a non-200 answer (or an error event inside a stream)."""
        try:
            message, delay = self.error_detail(json.loads(text))
        except ValueError:
            message, delay = "", None
        message = self.redact((message or text)[:MAX_MESSAGE])
        after = retry_after(headers or {})
        if after is None:
            after = delay
        where = self.name
        if status == 429:
            return ProviderError(Failure.RATE_LIMITED, f"{where}: rate limited: {message}",
                                 status, after)
        if status >= 500 or status == 408:
            return ProviderError(Failure.SERVER, f"{where}: provider error {status}: {message}",
                                 status, after)
        if status in (401, 403, 404):
            return ProviderError(Failure.REFUSED, f"{where}: refused ({status}): {message}",
                                 status)
        return ProviderError(Failure.BAD_REQUEST, f"{where}: provider refused the request "
                             f"({status}): {message}", status)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def number(raw: Mapping[str, Any], key: str) -> int:
    """A token count from a usage object; absent, null or malformed counts are 0."""
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return 0
    try:
        return max(0, int(value))
    except (ValueError, OverflowError):  # "1.5", NaN, Infinity
        return 0
