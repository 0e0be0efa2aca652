"""Build the router's providers from settings: the simulator, OpenAI, Anthropic and Gemini
when their keys are found, and every deployment of the deployments file.

A deployment whose key cannot be found is skipped (its provider's models then show "no X
provider configured"); the reason names the variable or file, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from tokenrt_common.server import StartupError
from tokenrt_common.settings import Settings
from tokenrt_router.providers.anthropic import Anthropic
from tokenrt_router.providers.base import Breaker, Provider
from tokenrt_router.providers.deployments import (
    Deployment,
    DeploymentError,
    DeploymentPool,
    DeploymentSpec,
    load_specs,
)
from tokenrt_router.providers.gemini import Gemini
from tokenrt_router.providers.openai_compat import OpenAICompatible
from tokenrt_router.providers.secrets import Secret, load_key


@dataclass
class Built:
    providers: dict[str, Provider]
    # deployment name -> why it is not configured
    skipped: dict[str, str] = field(default_factory=dict)
    # provider name -> its deployments' names, in order of preference
    configured: dict[str, list[str]] = field(default_factory=dict)


def default_specs(s: Settings) -> list[DeploymentSpec]:
    """The three vendors' own APIs, configured by settings."""
    def env(names: str) -> tuple[str, ...]:
        return tuple(n for n in names.split(",") if n)
    return [
        DeploymentSpec(name="openai", provider="openai", protocol="openai",
                       base_url=s.provider_openai_base_url,
                       api_key_env=env(s.provider_openai_key_env),
                       api_key_file=s.provider_openai_key_file),
        DeploymentSpec(name="anthropic", provider="anthropic", protocol="anthropic",
                       base_url=s.provider_anthropic_base_url,
                       api_key_env=env(s.provider_anthropic_key_env),
                       api_key_file=s.provider_anthropic_key_file,
                       anthropic_version=s.provider_anthropic_version),
        DeploymentSpec(name="gemini", provider="gemini", protocol="gemini",
                       base_url=s.provider_gemini_base_url,
                       api_key_env=env(s.provider_gemini_key_env),
                       api_key_file=s.provider_gemini_key_file),
    ]


def adapter(spec: DeploymentSpec, key: Secret | None, s: Settings) -> Provider:
    connect = s.provider_connect_timeout_seconds
    if spec.protocol == "anthropic":
        return Anthropic(spec.name, spec.base_url, key,
                         spec.anthropic_version or s.provider_anthropic_version,
                         spec.headers, connect)
    if spec.protocol == "gemini":
        return Gemini(spec.name, spec.base_url, key, spec.headers, connect)
    # OpenAI itself wants max_completion_tokens (o-series refuse max_tokens); most
    # OpenAI-compatible servers know only max_tokens.
    field_name = spec.max_tokens_field or (
        "max_completion_tokens" if spec.protocol == "openai" else "max_tokens")
    return OpenAICompatible(spec.name, spec.base_url, key, field_name,
                            headers=spec.headers, connect_timeout=connect)


def build(s: Settings, env: Mapping[str, str]) -> Built:
    """Providers by catalog provider name. Raises DeploymentError on a malformed file."""
    specs = default_specs(s)
    if s.provider_deployments_file:
        extra = load_specs(s.provider_deployments_file)
        names = {x.name for x in extra}
        # A file entry named like a default replaces it.
        specs = [d for d in specs if d.name not in names] + extra
    built = Built({"simulator": OpenAICompatible("simulator", s.router_sim_base_url)})
    pools: dict[str, list[Deployment]] = {}
    for spec in specs:
        key: Secret | None = None
        if spec.keyed:
            key, why = load_key(spec.api_key_env, spec.api_key_file, env)
            if key is None:
                built.skipped[spec.name] = why
                continue
        pools.setdefault(spec.provider, []).append(Deployment(spec, adapter(spec, key, s)))
    for provider, deployments in pools.items():
        built.providers[provider] = DeploymentPool(
            provider, deployments, Breaker(s.provider_cooldown_failures,
                                           s.provider_cooldown_seconds))
        built.configured[provider] = [d.spec.name for d in deployments]
    return built


def for_router(s: Settings, log: structlog.stdlib.BoundLogger,
               env: Mapping[str, str] | None = None) -> dict[str, Provider]:
    """`build` for the router process: logs what is configured and what is skipped (names
    and reasons only), and turns a malformed deployments file into a start-up error."""
    try:
        built = build(s, os.environ if env is None else env)
    except DeploymentError as exc:
        raise StartupError(str(exc)) from None
    for name, why in built.skipped.items():
        log.info("router.deployment_not_configured", deployment=name, reason=why)
    for provider, names in built.configured.items():
        log.info("router.provider_configured", provider=provider, deployments=names)
    return built.providers
