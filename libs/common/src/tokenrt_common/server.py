"""The gRPC server every tokenrt service runs in.

`run(spec)` is a service's whole `main()`: it loads settings, configures logs, serves the
service's servicers with the standard health service, server reflection, Prometheus
metrics on an HTTP port and the call wrapper (request id, metrics, error mapping),
reports SERVING only while the service's dependencies answer, and drains in-flight calls
on SIGTERM or SIGINT. With TOKENRT_TLS_MODE=tls or mtls it serves TLS only (mTLS: a client
certificate signed by TOKENRT_TLS_CA_FILE is required).
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import structlog
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from tokenrt_common.connect import Infra
from tokenrt_common.interceptors import CallWrapper
from tokenrt_common.logs import configure_logging
from tokenrt_common.metrics import Metrics
from tokenrt_common.settings import Settings, SettingsError, load_settings

READINESS_INTERVAL_SECONDS = 1.0
# A health entry that is SERVING while the process serves at all, whatever its
# dependencies say: what a liveness probe should ask (readiness asks the overall "").
LIVENESS = "liveness"


@dataclass
class Runtime:
    """What a service's parts are built from: settings, its logger and its connections."""

    name: str
    settings: Settings
    log: structlog.stdlib.BoundLogger
    infra: Infra
    metrics: Metrics
    # Work the service finishes before it may report SERVING, run once the server listens
    # (e.g. a first request to itself, so that no caller's request is the first). It
    # bounds its own time; a SIGTERM during it stops the service right after.
    warm_up: Callable[[], Coroutine[Any, Any, None]] | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a background task that the server cancels on shutdown."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    def close_at_shutdown(self, close: Callable[[], Awaitable[Any]], name: str) -> None:
        """Run `close` (a connection's or a session's) when the server shuts down."""

        async def held() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await close()

        self.spawn(held(), name)

    async def cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass(frozen=True)
class Servicer:
    """One gRPC service implementation and how to add it to a server."""

    impl: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    descriptor: ServiceDescriptor


@dataclass(frozen=True)
class ServiceSpec:
    """What makes a tokenrt service: its name, what it needs, and its servicers."""

    name: str
    needs: frozenset[str]
    build: Callable[[Runtime], Sequence[Servicer]]


class StartupError(Exception):
    """Start-up cannot go on; the message is the one line the operator sees."""


def run(spec: ServiceSpec) -> None:
    """A service's `main()`: exit 2 with one clear line when start-up is impossible."""
    try:
        settings = load_settings()
        asyncio.run(serve(spec, settings))
    except (SettingsError, StartupError) as exc:
        print(f"tokenrt-{spec.name}: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


async def serve(spec: ServiceSpec, settings: Settings) -> None:
    log = configure_logging(settings, spec.name)
    endpoint = settings.endpoint(spec.name)
    metrics = Metrics(spec.name)
    # Ports first: a taken port must stop start-up before anything else is done or logged.
    listen = f"{settings.bind_host}:{endpoint.port}"
    try:
        _check_port_free(settings.bind_host, endpoint.port)
    except OSError as exc:
        raise StartupError(f"cannot listen for gRPC on {listen}: {exc.strerror or exc} "
                           f"(set TOKENRT_{spec.name.upper()}_ADDR)") from None
    try:
        metrics.serve_http(settings.bind_host, endpoint.metrics_port)
    except OSError as exc:
        raise StartupError(
            f"cannot serve metrics on {settings.bind_host}:{endpoint.metrics_port}: "
            f"{exc.strerror or exc} (set TOKENRT_{spec.name.upper()}_METRICS_PORT)"
        ) from None

    infra = Infra(settings, spec.needs, log)
    runtime = Runtime(spec.name, settings, log, infra, metrics)
    limit = settings.grpc_max_message_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
            # Clients reconnect now and then, so new replicas get a share of the calls.
            ("grpc.max_connection_age_ms", 300_000),
            ("grpc.max_connection_age_grace_ms", 30_000),
            # Accept the keepalive pings every client channel sends on idle connections
            # (client.py: every 30 s); gRPC's defaults (none while idle, at most one in 5
            # min) answer them with GOAWAY "too_many_pings", failing calls in flight.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ],
    )
    # Every handler is wrapped once as it is registered (request id, metrics, errors).
    wrapped = CallWrapper(log, metrics, settings.fault_delay_ms).server(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, wrapped)
    servicers = spec.build(runtime)
    names = [s.descriptor.full_name for s in servicers]
    for s in servicers:
        fill_unimplemented(s.impl, s.descriptor)
        s.add_to_server(s.impl, wrapped)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME],
        wrapped,
    )
    await _set_health(health, names, serving=False)
    await health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)

    try:
        credentials = server_credentials(settings)
        bound = (server.add_secure_port(listen, credentials) if credentials
                 else server.add_insecure_port(listen))
    except RuntimeError:  # taken between the check above and now
        bound = 0
    if not bound:
        raise StartupError(f"cannot listen for gRPC on {listen}: gRPC could not bind it "
                           f"(set TOKENRT_{spec.name.upper()}_ADDR)")
    await server.start()
    infra.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if runtime.warm_up is not None:
        await runtime.warm_up()
    readiness = asyncio.create_task(_watch_readiness(runtime, health, names, stop))
    log.info("service.started", address=listen, metrics_port=endpoint.metrics_port,
             needs=sorted(spec.needs), tls=settings.tls_mode)

    await stop.wait()
    log.info("service.draining", grace_s=settings.shutdown_grace_seconds)
    readiness.cancel()
    await health.enter_graceful_shutdown()
    await server.stop(settings.shutdown_grace_seconds)
    await runtime.cancel_tasks()
    try:
        await infra.close()
    except Exception as exc:  # closing is best effort; the process is exiting anyway
        log.warning("service.close_failed", error=type(exc).__name__)
    metrics.stop_http()
    log.info("service.stopped")


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The server's TLS credentials, or None for plaintext (TOKENRT_TLS_MODE=off).

    With "mtls" a client must present a certificate signed by the CA: the TLS handshake
    fails without one, before any RPC is read."""
    if settings.tls_mode == "off":
        return None
    try:
        ca, cert, key = (Path(p).read_bytes() for p in (
            settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file))
    except OSError as exc:
        raise StartupError(f"cannot read TLS files: {exc.filename}: {exc.strerror}") from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca,
        require_client_auth=settings.tls_mode == "mtls")


def _check_port_free(host: str, port: int) -> None:
    """Fail early, with the OS's reason, when the port is taken (gRPC would only log it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


async def _watch_readiness(
    runtime: Runtime, health: HealthServicer, names: list[str], stop: asyncio.Event
) -> None:
    serving: bool | None = None
    while not stop.is_set():
        answers = await runtime.infra.check()
        for dependency, up in answers.items():
            runtime.metrics.dependency_up.labels(dependency=dependency).set(1 if up else 0)
        now = all(answers.values())
        if now != serving:
            serving = now
            await _set_health(health, names, serving=now)
            runtime.log.info("service.health", serving=now, dependencies=answers)
        await asyncio.sleep(READINESS_INTERVAL_SECONDS)


async def _set_health(health: HealthServicer, names: list[str], *, serving: bool) -> None:
    status = (health_pb2.HealthCheckResponse.SERVING if serving
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    for name in ["", *names]:
        await health.set(name, status)


def fill_unimplemented(impl: object, descriptor: ServiceDescriptor) -> None:
    """Answer UNIMPLEMENTED, with a message, for every RPC the servicer does not define.

    The generated base classes raise NotImplementedError from a synchronous method,
    which the asyncio server would report as UNKNOWN; this gives a clean status instead.
    """
    base = next(c for c in type(impl).__mro__ if c.__module__.endswith("_pb2_grpc"))
    for method in descriptor.methods:
        own = getattr(type(impl), method.name, None)
        if own is not None and own is not getattr(base, method.name, None):
            continue
        setattr(impl, method.name, _unimplemented(f"{descriptor.full_name}/{method.name}"))


def _unimplemented(rpc: str) -> Callable[..., Coroutine[Any, Any, None]]:
    async def answer(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            f"{rpc} is not implemented yet in this version of tokenrt")

    return answer


def servicer(impl: object, grpc_module: ModuleType) -> Servicer:
    """Wrap `impl`, an instance of a generated `<Name>Servicer` from `grpc_module`."""
    base = next(c for c in type(impl).__mro__ if c.__module__ == grpc_module.__name__)
    service = base.__name__.removesuffix("Servicer")
    messages = importlib.import_module(grpc_module.__name__.removesuffix("_grpc"))
    return Servicer(
        impl=impl,
        add_to_server=getattr(grpc_module, f"add_{base.__name__}_to_server"),
        descriptor=messages.DESCRIPTOR.services_by_name[service],
    )
