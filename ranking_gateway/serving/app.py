"""Wiring: the serving plan, the loaded index, the Triton client, the cache and the
personalisation service, assembled once in the app's lifespan. Routes live in `routes`."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

from ranking_gateway.core.config import GatewaySettings, SearchLimits
from ranking_gateway.core.contract import DOCUMENT_TOKENS, ENCODER, QUERY_TOKENS, RERANKER
from ranking_gateway.core.token_store import TokenStore
from ranking_gateway.personalization.service import Personalization
from ranking_gateway.serving.admission import AdmissionGate
from ranking_gateway.serving.auth import ApiKeys
from ranking_gateway.serving.cache import LruTtlCache, SingleFlightCache
from ranking_gateway.serving.index import DocumentIndex
from ranking_gateway.serving.metrics import GatewayMetrics, RequestCounter
from ranking_gateway.serving.plan import ServingPlan, resolve
from ranking_gateway.serving.redis_cache import RedisCacheStore, make_redis
from ranking_gateway.serving.rerank_api import RerankService
from ranking_gateway.serving.routes import EXCEPTION_HANDLERS, ROUTES
from ranking_gateway.serving.search import LateInteractionReranker, Reranker, SearchPipeline
from ranking_gateway.serving.tokenization import TextTokenizer
from ranking_gateway.serving.triton_client import TritonModels


@dataclass
class Gateway:
    """What the routes need, built once in the lifespan."""

    plan: ServingPlan
    index: DocumentIndex
    models: TritonModels
    search: SearchPipeline
    personalization: Personalization
    metrics: GatewayMetrics
    limits: SearchLimits
    snippet_chars: int
    rerank: RerankService
    redis: Any | None = None  # the shared redis.asyncio client with --redis-url
    api_keys: ApiKeys | None = None  # None: every route is open (serve warns off loopback)

    @classmethod
    def load(cls, plan: ServingPlan, settings: GatewaySettings, triton_url: str, metrics: GatewayMetrics) -> Gateway:
        paths = plan.paths
        index = DocumentIndex(paths, plan.manifest)
        models = TritonModels(triton_url, settings.triton_timeout_s, settings.rerank_chunk_size)
        encoder_tokenizer = TextTokenizer(paths.tokenizer(ENCODER.name), plan.manifest.encoder.max_length)
        reranker = _reranker(plan, models)
        redis = make_redis(settings.redis_url) if settings.redis_url else None
        store = (
            RedisCacheStore(redis, settings.cache.ttl_s)
            if redis is not None
            else LruTtlCache(settings.cache.max_entries, settings.cache.ttl_s)
        )
        personalization = Personalization.open(
            settings.personalization, plan.event_log, index.embeddings, [d.id for d in index.documents], redis
        )
        gate = AdmissionGate(settings.admission)
        search = SearchPipeline(
            plan, index, models, encoder_tokenizer, reranker, SingleFlightCache(store), metrics, personalization,
            gate, settings.deadline_ms,
        )
        rerank = RerankService(reranker, metrics, gate, settings.deadline_ms)  # one gate: one bound on the work
        api_keys = ApiKeys.read(settings.api_key_file, settings.protect_search) if settings.api_key_file else None
        return cls(
            plan, index, models, search, personalization, metrics, settings.limits, settings.snippet_chars, rerank,
            redis, api_keys,
        )

    @property
    def model_names(self) -> list[str]:
        return self.plan.triton_models

    async def close(self) -> None:
        await self.personalization.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.models.close()


def _reranker_model(plan: ServingPlan) -> str:
    assert plan.rerank is not None
    return QUERY_TOKENS.name if plan.rerank.kind == "late-interaction" else RERANKER.name


def _reranker(plan: ServingPlan, models: TritonModels) -> Reranker | LateInteractionReranker | None:
    """The plan's reranker: a cross-encoder, or late interaction over the build's token store
    (already checked by `plan.resolve`, so opened here without re-hashing)."""
    if plan.rerank is None:
        return None
    name = _reranker_model(plan)
    tokenizer = TextTokenizer(plan.paths.tokenizer(name), plan.rerank.max_length)
    if plan.rerank.kind != "late-interaction":
        return Reranker(plan.rerank, tokenizer, models)
    entry = plan.manifest.token_store
    assert entry is not None
    store = TokenStore.open(plan.paths.root / entry.path, documents=plan.manifest.documents, dim=entry.dim)
    documents = plan.manifest.document_token_encoder  # None: a build from before `/v1/rerank`
    document_tokenizer = (
        TextTokenizer(plan.paths.tokenizer(DOCUMENT_TOKENS.name), documents.max_length) if documents else None
    )
    return LateInteractionReranker(plan.rerank, tokenizer, models, store, document_tokenizer)


def create_app(
    settings: GatewaySettings, triton_url: str, plan: ServingPlan | None = None, metrics: GatewayMetrics | None = None
) -> Starlette:
    """The gateway app; `plan` is resolved from `settings` unless the caller (serve) did it, and
    `metrics` is shared with whoever else reports in `/metrics` (serve's Triton supervisor)."""
    plan = plan or resolve(settings)
    metrics = metrics or GatewayMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.gateway = gw = Gateway.load(plan, settings, triton_url, metrics)
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
