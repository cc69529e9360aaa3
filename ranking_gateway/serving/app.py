"""The Starlette gateway: routes, JSON errors, and the lifespan that loads the index and
connects to Triton.

Every answer is JSON. Client mistakes are 4xx `{"error": {"code", "message"}}` and change
nothing; Triton trouble is a 503 or a degraded answer; anything unexpected is a plain 500
without a stack trace (the trace goes to the log).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.serving.cache import LruTtlCache, SingleFlightCache
from ranking_gateway.core.config import ENCODER_MODEL, RERANKER_MODEL, GatewaySettings
from ranking_gateway.core.errors import BackendUnavailable
from ranking_gateway.serving.metrics import GatewayMetrics
from ranking_gateway.personalization.gateway import Personalization
from ranking_gateway.serving.redis_cache import RedisCacheStore, make_redis
from ranking_gateway.serving.index import DocumentIndex
from ranking_gateway.serving.schemas import RequestError, SearchRequest
from ranking_gateway.serving.search import SearchService
from ranking_gateway.serving.tokenization import TextTokenizer
from ranking_gateway.serving.triton_client import TritonModels

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def read_json(request: Request) -> object:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(413, "body_too_large", f"the request body exceeds {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None


def rerank_max_length(settings: GatewaySettings, manifest: Manifest) -> int:
    """Reranker tokens per pair: `--rerank-max-length`, capped at the build's max_length (the
    compiled engine's profile stops there; `serve` rejects a larger value before this point)."""
    assert manifest.reranker is not None
    built = manifest.reranker.max_length
    return built if settings.rerank_max_length is None else min(settings.rerank_max_length, built)


@dataclass
class Gateway:
    """What the routes need, built once in the lifespan."""

    settings: GatewaySettings
    manifest: Manifest
    index: DocumentIndex
    models: TritonModels
    search: SearchService
    metrics: GatewayMetrics
    personalization: Personalization
    redis: object | None = None  # the shared redis.asyncio client with --redis-url

    @classmethod
    def load(cls, settings: GatewaySettings, triton_url: str, metrics: GatewayMetrics) -> "Gateway":
        paths = ArtifactPaths(settings.artifacts)
        manifest = Manifest.read(paths.root)
        index = DocumentIndex(paths, manifest)
        models = TritonModels(triton_url, settings.triton_timeout_s, settings.rerank_chunk_size)
        encoder_tok = TextTokenizer(paths.tokenizer(ENCODER_MODEL), manifest.encoder.max_length)
        reranker_tok = (
            TextTokenizer(paths.tokenizer(RERANKER_MODEL), rerank_max_length(settings, manifest))
            if manifest.reranker
            else None
        )
        redis = make_redis(settings.redis_url) if settings.redis_url else None
        store = (
            RedisCacheStore(redis, settings.cache.ttl_s)
            if redis is not None
            else LruTtlCache(settings.cache.max_entries, settings.cache.ttl_s)
        )
        cache = SingleFlightCache(store)
        personalization = Personalization(settings, index, redis)
        search = SearchService(
            settings, index, models, encoder_tok, reranker_tok, cache, metrics, manifest.version_key,
            personalizer=personalization,
        )
        return cls(settings, manifest, index, models, search, metrics, personalization, redis)

    @property
    def model_names(self) -> list[str]:
        return [ENCODER_MODEL] + ([RERANKER_MODEL] if self.manifest.reranker else [])


def create_app(settings: GatewaySettings, triton_url: str) -> Starlette:
    metrics = GatewayMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.gateway = gw = Gateway.load(settings, triton_url, metrics)
        try:
            await gw.personalization.start()
            yield
        finally:
            await gw.personalization.close()
            if gw.redis is not None:
                await gw.redis.aclose()
            await gw.models.close()

    def route(path: str, methods: list[str]):
        def wrap(handler: Callable[[Request, Gateway], Awaitable[Response]]) -> Route:
            async def endpoint(request: Request) -> Response:
                try:
                    response = await handler(request, request.app.state.gateway)
                except RequestError as exc:
                    response = error_response(exc.status, exc.code, exc.message)
                except BackendUnavailable as exc:
                    response = error_response(503, "backend_unavailable", str(exc))
                except Exception:
                    log.exception("unhandled error on %s %s", request.method, path)
                    response = error_response(500, "internal_error", "internal error; see the gateway log")
                metrics.requests.labels(route=path, status=str(response.status_code)).inc()
                return response

            return Route(path, endpoint, methods=methods)

        return wrap

    @route("/v1/search", ["POST"])
    async def search(request: Request, gw: Gateway) -> Response:
        parsed = SearchRequest.parse(await read_json(request), gw.settings.limits)
        return JSONResponse(await gw.search.search(parsed))

    @route("/v1/events", ["POST"])
    async def events(request: Request, gw: Gateway) -> Response:
        # 202 only once the event is in the durable log and the profile is updated
        await gw.personalization.service.record_event(await read_json(request))
        return JSONResponse({"accepted": True}, status_code=202)

    @route("/v1/users/{user_id}/profile", ["GET"])
    async def user_profile(request: Request, gw: Gateway) -> Response:
        profile = await gw.personalization.service.profile(request.path_params["user_id"])
        if profile is None:
            raise RequestError(404, "no_profile", f"no profile for user {request.path_params['user_id']!r}")
        return JSONResponse(profile)

    @route("/v1/users/{user_id}", ["DELETE"])
    async def delete_user(request: Request, gw: Gateway) -> Response:
        return JSONResponse(await gw.personalization.service.erase(request.path_params["user_id"]))

    @route("/healthz", ["GET"])
    async def healthz(request: Request, gw: Gateway) -> Response:
        return JSONResponse({"status": "ok"})

    @route("/readyz", ["GET"])
    async def readyz(request: Request, gw: Gateway) -> Response:
        models = await gw.models.ready_models(gw.model_names)
        ready = all(models.values()) and len(gw.index) > 0
        body = {
            "ready": ready, "models": models, "documents": len(gw.index), "version": gw.manifest.version_key,
            "retrieval": gw.search.retrieval,
            # how the reranker is served: what an operator comparing two gateways needs to see
            "rerank": gw.search.rerank_settings(),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @route("/metrics", ["GET"])
    async def metrics_endpoint(request: Request, gw: Gateway) -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal error; see the gateway log")

    routes = [search, events, user_profile, delete_user, healthz, readyz, metrics_endpoint]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.metrics = metrics
    return app
