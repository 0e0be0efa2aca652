"""Deployments: where each provider's models are served, and fallback across them.

A deployment is one endpoint with one key: OpenAI itself, a second OpenAI organisation,
Anthropic, Gemini, or any OpenAI-compatible server (vLLM, Ollama, llama.cpp, DeepSeek,
OpenRouter). The router asks for a provider by the catalog's provider name (`openai`,
`anthropic`, `gemini`, `openai_compatible`); a `DeploymentPool` answers for all the
deployments of that name: the first healthy deployment that serves the model id gets the
request, and a retryable failure or a refusal (401/403/404) moves it to the next one at
once. A deployment that fails `cooldown_failures` times in a row, or answers 429/5xx with a
Retry-After, cools down (skipped while another serves the model). Retries with backoff
and fallback across models stay in `calls.py`, above the pool.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tokenrt_router.providers.base import (
    Answer,
    Breaker,
    Delta,
    Failure,
    Provider,
    ProviderError,
    ProviderRequest,
    StreamEnd,
)

PROTOCOLS = ("openai", "anthropic", "gemini", "openai_compatible")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELDS = {"name", "provider", "protocol", "base_url", "api_key_env", "api_key_file",
           "models", "model_ids", "headers", "timeout_seconds", "max_tokens_field",
           "anthropic_version"}


class DeploymentError(ValueError):
    """The deployments file is malformed; the message names the file, entry and field."""


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    # The catalog provider whose models it serves (default: its protocol).
    provider: str
    # Wire format: openai | anthropic | gemini | openai_compatible.
    protocol: str
    base_url: str
    # Environment variables tried in order for the key; or a secret file. Neither: no key
    # (a local server).
    api_key_env: tuple[str, ...] = ()
    api_key_file: str = ""
    # fnmatch globs of the provider model ids it serves.
    models: tuple[str, ...] = ("*",)
    # Provider model id -> the id this deployment knows the model by.
    model_ids: Mapping[str, str] = field(default_factory=dict)
    # Extra request headers (OpenRouter's HTTP-Referer / X-Title, ...); not secrets.
    headers: Mapping[str, str] = field(default_factory=dict)
    # Overrides TOKENRT_ROUTER_PROVIDER_TIMEOUT_SECONDS for this deployment.
    timeout_seconds: float | None = None
    max_tokens_field: str = ""
    anthropic_version: str = ""

    @property
    def keyed(self) -> bool:
        return bool(self.api_key_env or self.api_key_file)

    def serves(self, model_id: str) -> bool:
        return any(fnmatch.fnmatchcase(model_id, g) for g in self.models)


def load_specs(path: str) -> list[DeploymentSpec]:
    """Parse a YAML (or JSON) file: `deployments: [{name, protocol, base_url, ...}]`."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise DeploymentError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DeploymentError(f"{path}: not valid YAML or JSON: {exc}") from None
    items = data.get("deployments") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DeploymentError(f"{path}: expected a mapping with a `deployments` list")
    specs = [parse_spec(raw, f"{path}: deployments[{i}]") for i, raw in enumerate(items)]
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise DeploymentError(f"{path}: deployment name {s.name!r} is used twice")
        seen.add(s.name)
    return specs


def parse_spec(raw: Any, where: str) -> DeploymentSpec:
    if not isinstance(raw, dict):
        raise DeploymentError(f"{where}: expected a mapping")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise DeploymentError(f"{where}: unknown field(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(_FIELDS))}")
    name = str(raw.get("name", ""))
    if not _NAME.fullmatch(name):
        raise DeploymentError(f"{where}: name {name!r} must be 1-64 letters, digits, "
                              "'_', '.', '-'")
    where = f"{where} ({name})"
    protocol = str(raw.get("protocol", ""))
    if protocol not in PROTOCOLS:
        raise DeploymentError(f"{where}: protocol {protocol!r} is not one of {PROTOCOLS}")
    provider = str(raw.get("provider") or protocol)
    if provider not in PROTOCOLS:
        raise DeploymentError(f"{where}: provider {provider!r} is not one of {PROTOCOLS}")
    base_url = str(raw.get("base_url", ""))
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", base_url):
        raise DeploymentError(f"{where}: base_url {base_url!r} is not an http(s) URL")
    env = raw.get("api_key_env") or ()
    env = (env,) if isinstance(env, str) else tuple(env)
    for n in env:
        if not isinstance(n, str) or not _ENV.fullmatch(n):
            raise DeploymentError(f"{where}: api_key_env {n!r} is not a variable name")
    timeout = raw.get("timeout_seconds")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout <= 0):
        raise DeploymentError(f"{where}: timeout_seconds must be a number greater than 0")
    models = raw.get("models", ["*"])
    models = [models] if isinstance(models, str) else models
    return DeploymentSpec(
        name=name, provider=provider, protocol=protocol, base_url=base_url,
        api_key_env=env, api_key_file=str(raw.get("api_key_file") or ""),
        models=tuple(str(m) for m in _list(models, where, "models")),
        model_ids=_str_map(raw.get("model_ids"), where, "model_ids"),
        headers=_str_map(raw.get("headers"), where, "headers"),
        timeout_seconds=float(timeout) if timeout is not None else None,
        max_tokens_field=str(raw.get("max_tokens_field") or ""),
        anthropic_version=str(raw.get("anthropic_version") or ""))


def _list(value: Any, where: str, key: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise DeploymentError(f"{where}: {key} must be a non-empty list")
    return value


def _str_map(value: Any, where: str, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DeploymentError(f"{where}: {key} must be a mapping of strings")
    return {str(k): str(v) for k, v in value.items()}


@dataclass
class Deployment:
    spec: DeploymentSpec
    adapter: Provider


class DeploymentPool:
    """One provider name's deployments, as one Provider (see the module docstring)."""

    def __init__(self, name: str, deployments: Sequence[Deployment],
                 cooldown: Breaker) -> None:
        self.name = name
        self.deployments = list(deployments)
        self.cooldown = cooldown

    def __repr__(self) -> str:
        return f"DeploymentPool({self.name!r}, {[d.spec.name for d in self.deployments]})"

    def serves(self, model_id: str) -> bool:
        return any(d.spec.serves(model_id) for d in self.deployments)

    def order(self, model_id: str) -> list[Deployment]:
        """Healthy deployments serving the model, in file order; when all of them cool
        down, the one that comes back first (a probe)."""
        serving = [d for d in self.deployments if d.spec.serves(model_id)]
        healthy = [d for d in serving if self.cooldown.open_for(d.spec.name) == 0]
        if healthy or not serving:
            return healthy
        return [min(serving, key=lambda d: self.cooldown.open_for(d.spec.name))]

    def _request(self, d: Deployment, req: ProviderRequest) -> ProviderRequest:
        mapped = d.spec.model_ids.get(req.model_id)
        return dataclasses.replace(req, model_id=mapped) if mapped else req

    def _timeout(self, d: Deployment, timeout: float) -> float:
        return d.spec.timeout_seconds or timeout

    def _failed(self, d: Deployment, err: ProviderError,
                errors: list[ProviderError] | None = None) -> bool:
        """Record a failure against the deployment's health; True when no other deployment
        can help (the request itself is wrong)."""
        if errors is not None:
            errors.append(err)
        if err.kind.callers_fault:
            return True
        if err.status != 404:  # a 404 is about one model only
            self.cooldown.failed(d.spec.name)
        if err.retry_after and err.kind in (Failure.RATE_LIMITED, Failure.SERVER):
            self.cooldown.cool(d.spec.name, err.retry_after)
        return False

    def _none(self, model_id: str) -> ProviderError:
        return ProviderError(Failure.REFUSED, f"no {self.name} deployment serves model "
                             f"{model_id!r} (configure one in TOKENRT_PROVIDER_DEPLOYMENTS_FILE)")

    @staticmethod
    def _all_failed(errors: list[ProviderError]) -> ProviderError:
        last = errors[-1]
        if len(errors) == 1:
            return last
        return ProviderError(last.kind, "; ".join(str(e) for e in errors), last.status,
                             last.retry_after)

    async def complete(self, req: ProviderRequest, timeout: float) -> Answer:  # noqa: ASYNC109
        errors: list[ProviderError] = []
        for d in self.order(req.model_id):
            try:
                answer = await d.adapter.complete(self._request(d, req),
                                                  self._timeout(d, timeout))
            except ProviderError as err:
                if self._failed(d, err, errors):
                    break
                continue
            self.cooldown.ok(d.spec.name)
            return answer
        raise self._all_failed(errors) if errors else self._none(req.model_id)

    async def stream(self, req: ProviderRequest,
                     timeout: float) -> AsyncIterator[Delta | StreamEnd]:  # noqa: ASYNC109
        errors: list[ProviderError] = []
        for d in self.order(req.model_id):
            gen = d.adapter.stream(self._request(d, req), self._timeout(d, timeout))
            try:
                try:
                    first = await gen.__anext__()
                except StopAsyncIteration:
                    raise ProviderError(Failure.MALFORMED, f"{d.spec.name}: empty stream") \
                        from None
            except ProviderError as err:
                await gen.aclose()  # type: ignore[attr-defined]
                if self._failed(d, err, errors):
                    break
                continue
            self.cooldown.ok(d.spec.name)
            try:
                yield first
                async for item in gen:
                    yield item
            except ProviderError as err:  # after output started: no fallback
                self._failed(d, err)
                raise
            finally:
                await gen.aclose()  # type: ignore[attr-defined]
            return
        raise self._all_failed(errors) if errors else self._none(req.model_id)

    async def close(self) -> None:
        for d in self.deployments:
            await d.adapter.close()
