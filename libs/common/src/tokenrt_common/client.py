"""Client channels to other tokenrt services: long-lived, with deadlines and request ids.

Every outgoing call without a deadline gets the configured one, and carries the request
id of the call being served (or a new one), so one request can be followed across
services in the logs. With TOKENRT_TLS_MODE=tls or mtls the channel is TLS (mtls: it
presents this process's certificate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from tokenrt_common.context import REQUEST_ID_HEADER, new_request_id, request_id
from tokenrt_common.settings import Settings


def open_channel(settings: Settings, service: str) -> grpc.aio.Channel:
    """A channel to one tokenrt service by name; keep it for the life of the process."""
    return open_channel_to(settings.endpoint(service).address, settings)


RECONNECT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]
# A probe polls a server that is starting: try again at once rather than after a second.
PROBE_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 250),
]


def open_channel_to(address: str, settings: Settings) -> grpc.aio.Channel:
    limit = settings.grpc_max_message_bytes
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Spread calls over every address the name resolves to (a headless Service
        # resolves to all its ready pods).
        ("grpc.lb_policy_name", "round_robin"),
        # After a dependency restarts, reconnect within seconds: gRPC's own backoff grows
        # to 120 s, so a service could wait minutes for a dependency that is long back.
        *RECONNECT_OPTIONS,
    ]
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options,
                                         interceptors=_interceptors(settings.rpc_timeout_seconds))
    return grpc.aio.secure_channel(address, credentials, options=options + tls_options(settings),
                                   interceptors=_interceptors(settings.rpc_timeout_seconds))


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS credentials for a channel to a tokenrt service, or None for plaintext: the CA
    that signs the services, and (with "mtls") this process's own certificate and key."""
    if settings.tls_mode == "off":
        return None
    ca = Path(settings.tls_ca_file).read_bytes()
    if settings.tls_mode != "mtls":
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=Path(settings.tls_key_file).read_bytes(),
        certificate_chain=Path(settings.tls_cert_file).read_bytes())


def tls_options(settings: Settings) -> list[tuple[str, Any]]:
    """Channel options TLS needs: the name to check the server certificate against."""
    if settings.tls_mode == "off" or not settings.tls_server_name:
        return []
    return [("grpc.ssl_target_name_override", settings.tls_server_name)]


def open_sync_channel(address: str, settings: Settings) -> grpc.Channel:
    """A blocking channel (probes, tests, scripts) with the same plaintext or TLS choice."""
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.insecure_channel(address, options=PROBE_OPTIONS)
    return grpc.secure_channel(address, credentials,
                               options=PROBE_OPTIONS + tls_options(settings))


def _with_defaults(details: grpc.aio.ClientCallDetails, timeout: float) -> Any:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    if REQUEST_ID_HEADER not in metadata:
        metadata[REQUEST_ID_HEADER] = request_id.get() or new_request_id()
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout if details.timeout is not None else timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _Defaults:
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    async def _intercept(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_defaults(details, self._timeout), request)


class _UnaryUnary(_Defaults, grpc.aio.UnaryUnaryClientInterceptor):
    intercept_unary_unary = _Defaults._intercept


class _UnaryStream(_Defaults, grpc.aio.UnaryStreamClientInterceptor):
    intercept_unary_stream = _Defaults._intercept


class _StreamUnary(_Defaults, grpc.aio.StreamUnaryClientInterceptor):
    intercept_stream_unary = _Defaults._intercept


class _StreamStream(_Defaults, grpc.aio.StreamStreamClientInterceptor):
    intercept_stream_stream = _Defaults._intercept


def _interceptors(timeout: float) -> list[grpc.aio.ClientInterceptor]:
    return [_UnaryUnary(timeout), _UnaryStream(timeout), _StreamUnary(timeout),
            _StreamStream(timeout)]
