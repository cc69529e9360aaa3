"""Prometheus metrics of one gateway (own registry: two apps in one process don't collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ranking_gateway_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.stage_latency = Histogram(
            "ranking_gateway_stage_latency_seconds",
            "Latency of each search stage (encode, retrieve, rerank, personalize, total)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.cache_hits = Counter("ranking_gateway_cache_hits", "Hot-query cache hits", registry=self.registry)
        self.cache_misses = Counter("ranking_gateway_cache_misses", "Hot-query cache misses", registry=self.registry)
        self.degraded = Counter(
            "ranking_gateway_degraded_responses", "Searches answered without a stage that failed", ["reason"],
            registry=self.registry,
        )
        # the embedded Triton's supervisor (ranking_gateway.serving.triton_supervisor)
        self.triton_exits = Counter(
            "ranking_gateway_triton_exits", "Times the embedded Triton exited unasked", registry=self.registry
        )
        self.triton_restarts = Counter(
            "ranking_gateway_triton_restarts", "Attempts to start the embedded Triton again", registry=self.registry
        )
        self.triton_recovery = Histogram(
            "ranking_gateway_triton_recovery_seconds", "From the embedded Triton's exit to its restart being ready",
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300), registry=self.registry,
        )

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_latency.labels(stage=stage).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestCounter:
    """ASGI middleware: counts HTTP requests by route template and final status (after the
    exception handlers; an unhandled error counts as 500)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(route=path, status=str(status)).inc()
