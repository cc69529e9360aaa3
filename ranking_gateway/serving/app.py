"""Wiring: the serving plan, the loaded index, the Triton client, the cache and the
personalisation service, assembled once in the app's lifespan. Routes live in `routes`."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

from ranking_gateway.core.config import GatewaySettings, SearchLimits
from ranking_gateway.personalization.service import Personalization
from ranking_gateway.serving.admission import AdmissionGate
from ranking_gateway.serving.auth import ApiKeys
from ranking_gateway.serving.cache import LruTtlCache, SingleFlightCache
from ranking_gateway.serving.deploy import Deployer, LiveTriton
from ranking_gateway.serving.index import DocumentIndex
from ranking_gateway.serving.metrics import GatewayMetrics, RequestCounter
from ranking_gateway.serving.plan import ServingPlan, resolve
from ranking_gateway.serving.query_stats import RecentQueries
from ranking_gateway.serving.redis_cache import RedisCacheStore, make_redis
from ranking_gateway.serving.rerank_api import RerankService
from ranking_gateway.serving.routes import EXCEPTION_HANDLERS, ROUTES
from ranking_gateway.serving.search import SearchPipeline
from ranking_gateway.serving.triton_client import TritonModels
from ranking_gateway.serving.version import ServingVersion, Shared


@dataclass
class Gateway:
    """What the routes need, built once in the lifespan. `current` is the version being served:
    a live swap (`serving.deploy`) replaces it with one assignment; everything else is shared by
    every version and lives as long as the process."""

    current: ServingVersion
    shared: Shared
    settings: GatewaySettings
    limits: SearchLimits
    snippet_chars: int
    redis: Any | None = None  # the shared redis.asyncio client with --redis-url
    api_keys: ApiKeys | None = None  # None: every route is open (serve warns off loopback)
    recent: RecentQueries = field(default_factory=RecentQueries)  # what `deploy --warm N` warms
    deployer: Any | None = None  # serving.deploy.Deployer, set by create_app

    @classmethod
    def load(
        cls, plan: ServingPlan, settings: GatewaySettings, triton_url: str, metrics: GatewayMetrics,
        names: dict[str, str] | None = None,
    ) -> Gateway:
        """`names`: the contract -> Triton model names of a live repository (None: the contract's own)."""
        models = TritonModels(triton_url, settings.triton_timeout_s, settings.rerank_chunk_size)
        redis = make_redis(settings.redis_url) if settings.redis_url else None
        store = (
            RedisCacheStore(redis, settings.cache.ttl_s)
            if redis is not None
            else LruTtlCache(settings.cache.max_entries, settings.cache.ttl_s)
        )
        shared = Shared(models, SingleFlightCache(store), AdmissionGate(settings.admission), metrics)

        def personalization(index: DocumentIndex) -> Personalization:
            return Personalization.open(
                settings.personalization, plan.event_log, index.embeddings, [d.id for d in index.documents], redis
            )

        current = ServingVersion.load(plan, settings, shared, names, personalization)
        api_keys = ApiKeys.read(settings.api_key_file, settings.protect_search) if settings.api_key_file else None
        return cls(current, shared, settings, settings.limits, settings.snippet_chars, redis, api_keys)

    # the serving version's parts, as the routes and tests read them
    @property
    def plan(self) -> ServingPlan:
        return self.current.plan

    @property
    def index(self) -> DocumentIndex:
        return self.current.index

    @property
    def models(self) -> TritonModels:
        return self.current.models

    @property
    def search(self) -> SearchPipeline:
        return self.current.search

    @property
    def rerank(self) -> RerankService:
        return self.current.rerank

    @property
    def personalization(self) -> Personalization:
        return self.current.personalization

    @property
    def metrics(self) -> GatewayMetrics:
        return self.shared.metrics

    @property
    def model_names(self) -> list[str]:
        return self.current.model_names

    async def close(self) -> None:
        await self.current.personalization.close()  # the store and event log every version shares
        if self.redis is not None:
            await self.redis.aclose()
        await self.shared.models.close()


def create_app(
    settings: GatewaySettings, triton_url: str, plan: ServingPlan | None = None, metrics: GatewayMetrics | None = None,
    live: LiveTriton | None = None,
) -> Starlette:
    """The gateway app; `plan` is resolved from `settings` unless the caller (serve) did it, and
    `metrics` is shared with whoever else reports in `/metrics` (serve's Triton supervisor).
    `live`: the embedded Triton's live repository, which makes `POST /v1/admin/deploy` swap
    models too (without it, a deploy that needs other models is refused with a 501)."""
    plan = plan or resolve(settings)
    metrics = metrics or GatewayMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.gateway = gw = Gateway.load(plan, settings, triton_url, metrics, live.names if live else None)
        gw.deployer = Deployer(gw, live)
        try:
            await gw.personalization.start()
            # the loaded index, tokenizers and replayed profiles live as long as the process: move
            # them out of the collector's reach. Measured on the SciFact build: a full collection
            # over them stalled the event loop 38 ms, every request in flight with it (the
            # /v1/events p99); frozen, it finds nothing to scan
            gc.collect()
            gc.freeze()
            yield
        finally:
            gc.unfreeze()
            await gw.close()

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[Middleware(RequestCounter, metrics=metrics)],
    )
    app.state.metrics = metrics
    return app
