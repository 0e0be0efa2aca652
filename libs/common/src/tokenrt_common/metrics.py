"""Prometheus metrics of one service, in a registry of its own, served over HTTP."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Per-RPC counts by status code, latencies, in-flight calls and dependency health."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.rpc_total = Counter(
            "tokenrt_grpc_requests", "gRPC calls handled, by method and status code",
            ["service", "method", "code"], registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            "tokenrt_grpc_request_seconds", "gRPC call latency in seconds, by method",
            ["service", "method"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge(
            "tokenrt_grpc_in_flight", "gRPC calls being handled now",
            ["service"], registry=self.registry,
        )
        self.dependency_up = Gauge(
            "tokenrt_dependency_up", "1 when the dependency answered the last readiness probe",
            ["dependency"], registry=self.registry,
        )
        self.in_flight_now = self.in_flight.labels(service)
        self._http: Any = None
        # Labelled children are looked up once per (method, code), not on every call.
        self._totals: dict[tuple[str, str], Any] = {}
        self._latencies: dict[str, Any] = {}

    def observe(self, method: str, code: str, seconds: float) -> None:
        total = self._totals.get((method, code))
        if total is None:
            total = self._totals[(method, code)] = self.rpc_total.labels(self.service, method,
                                                                         code)
        latency = self._latencies.get(method)
        if latency is None:
            latency = self._latencies[method] = self.rpc_seconds.labels(self.service, method)
        total.inc()
        latency.observe(seconds)

    def serve_http(self, host: str, port: int) -> None:
        """Serve /metrics on host:port; raises OSError when the port is taken."""
        self._http = start_http_server(port, addr=host, registry=self.registry)

    def stop_http(self) -> None:
        if self._http is not None:
            server, _thread = self._http
            server.shutdown()
            server.server_close()
            self._http = None
