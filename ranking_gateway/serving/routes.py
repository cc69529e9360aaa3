"""HTTP: the routes, the JSON they render, and the exception handlers that map domain errors
to status codes.

Every answer is JSON. Client mistakes are 4xx `{"error": {"code", "message"}}` and change
nothing; Triton or Redis trouble is a 503 or a degraded answer; anything unexpected is a plain
500 without a stack trace (the trace goes to the log). Bodies are parsed by `schemas` here, at
the edge; the pipeline and the personalisation service never see JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ranking_gateway.core.errors import BackendUnavailable
from ranking_gateway.serving.admission import Overloaded
from ranking_gateway.serving.auth import require_admin
from ranking_gateway.serving.deploy import DeployError, DeployRequest
from ranking_gateway.serving.openapi import openapi_document
from ranking_gateway.serving.plan import UnsupportedRetrieval
from ranking_gateway.serving.rerank_api import DeadlineExceeded, NoReranker, RerankResult
from ranking_gateway.serving.schemas import (
    MAX_BODY_BYTES,
    RequestError,
    RerankRequest,
    SearchRequest,
    parse_event,
    parse_user_id,
)
from ranking_gateway.serving.search import SearchResult

if TYPE_CHECKING:
    from ranking_gateway.serving.app import Gateway
    from ranking_gateway.serving.index import DocumentIndex

# one line per erasure, for whoever must show that it happened (user id hashed, never the key)
audit = logging.getLogger("ranking_gateway.audit")

def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> object:
    """The body as JSON, read no further than `limit` bytes (a hostile client's gigabyte is
    refused, not buffered; `/v1/rerank` allows more than the other routes' `MAX_BODY_BYTES`).
    Anything `json` refuses is a 400: bad syntax, bad UTF-8, an integer past Python's digit
    limit (ValueError), nesting past the recursion limit (RecursionError)."""
    too_large = RequestError(413, "body_too_large", f"the request body exceeds {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "invalid_json", "the request body is nested too deeply") from None


def render_search(result: SearchResult, index: DocumentIndex, snippet_chars: int) -> dict:
    """`index`: the version's that ranked it (a live swap may have switched since)."""
    return {
        "request_id": result.request_id,
        "results": [
            {
                "id": index.documents[hit.row].id,
                "score": hit.score,
                "retrieval_score": hit.retrieval_score,
                "title": index.documents[hit.row].title,
                "snippet": index.snippet(hit.row, snippet_chars),
            }
            for hit in result.hits
        ],
        "cached": result.cached,
        "degraded": result.degraded,
        "degraded_reasons": list(result.degraded_reasons),
        "reranked": result.reranked,
        "personalized": result.personalized,
        "retrieval": result.retrieval,
        "timings_ms": {name: round(ms, 3) for name, ms in result.timings_ms.items()},
    }


def render_rerank(result: RerankResult, request: RerankRequest) -> dict:
    results = []
    for hit in result.hits:
        item: dict[str, object] = {"index": hit.index, "relevance_score": hit.score}
        if request.return_documents:
            item["document"] = request.documents[hit.index]
        results.append(item)
    return {
        "request_id": result.request_id,
        "results": results,
        "timings_ms": {name: round(ms, 3) for name, ms in result.timings_ms.items()},
    }


def require_key(request: Request) -> None:
    """The API-key check of a `/v1/` route (`serve --api-key-file`; which ones: `ApiKeys.protects`,
    the rule the OpenAPI document follows too); a no-op without keys."""
    keys = gateway(request).api_keys
    if keys is not None and keys.protects(request.scope["route"].path):
        keys.require(request)


async def search(request: Request) -> Response:
    require_key(request)
    gw = gateway(request)
    parsed = SearchRequest.parse(await read_json(request), gw.limits)
    gw.recent.record(parsed)
    with gw.current.in_use() as version:  # one version from here to the answer, whatever a swap does meanwhile
        return JSONResponse(render_search(await version.search.search(parsed), version.index, gw.snippet_chars))


async def rerank(request: Request) -> Response:
    """The caller's documents by the served reranker's score (TEI / Infinity / Cohere shape)."""
    require_key(request)
    gw = gateway(request)
    parsed = RerankRequest.parse(await read_json(request, gw.limits.max_rerank_body_bytes), gw.limits)
    with gw.current.in_use() as version:
        return JSONResponse(render_rerank(await version.rerank.rerank(parsed), parsed))


async def record_event(request: Request) -> Response:
    """202 only once the event is in the durable log and the profile is updated."""
    require_key(request)
    gw = gateway(request)
    event = parse_event(await read_json(request), doc_exists=gw.personalization.has_document)
    timings = await gw.personalization.record(event)
    server_timing = ", ".join(f"{step};dur={ms:.3f}" for step, ms in timings.items())
    return JSONResponse({"accepted": True}, status_code=202, headers={"Server-Timing": server_timing})


async def user_profile(request: Request) -> Response:
    require_key(request)
    user_id = parse_user_id(request.path_params["user_id"])
    profile = await gateway(request).personalization.profile(user_id)
    if profile is None:
        raise RequestError(404, "no_profile", f"no profile for user {user_id!r}")
    return JSONResponse(profile)


async def delete_user(request: Request) -> Response:
    """Erases the profile and the user's events from the live store, and says so in the audit log
    (the user id hashed: the audit trail must not itself keep what was erased)."""
    require_key(request)
    user_id = parse_user_id(request.path_params["user_id"])
    erased = await gateway(request).personalization.erase(user_id)
    audit.info("erased user sha256:%s at %.3f", hashlib.sha256(user_id.encode()).hexdigest()[:16], time.time())
    return JSONResponse(erased)


async def admin_deploy(request: Request) -> Response:
    """A live swap (`serving.deploy`): the report once the new version serves and the old one is
    drained and unloaded; a refusal (the old version still serving) says why."""
    gw = gateway(request)
    require_admin(request, gw.api_keys)
    parsed = DeployRequest.parse(await read_json(request))
    return JSONResponse(await gw.deployer.deploy(parsed))


async def admin_deploy_status(request: Request) -> Response:
    gw = gateway(request)
    require_admin(request, gw.api_keys)
    return JSONResponse(gw.deployer.describe())


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    gw = gateway(request)
    models = await gw.models.ready_models(gw.model_names)
    ready = all(models.values()) and len(gw.index) > 0
    body = {"ready": ready, "models": models, "documents": len(gw.index), **gw.plan.describe()}
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    return Response(gateway(request).metrics.exposition(), media_type="text/plain; version=0.0.4")


async def openapi(request: Request) -> Response:
    """Generated from the registered routes and this gateway's limits: it documents what runs."""
    gw = gateway(request)
    endpoints = [(method, route.path) for route in ROUTES for method in route.methods or () if method != "HEAD"]
    keys = gw.api_keys
    protected = [] if keys is None else [(method, path) for method, path in endpoints if keys.protects(path)]
    return JSONResponse(openapi_document(gw.limits, endpoints, protected))


ROUTES = [
    Route("/v1/search", search, methods=["POST"]),
    Route("/v1/rerank", rerank, methods=["POST"]),
    Route("/v1/events", record_event, methods=["POST"]),
    Route("/v1/users/{user_id}/profile", user_profile, methods=["GET"]),
    Route("/v1/users/{user_id}", delete_user, methods=["DELETE"]),
    Route("/v1/admin/deploy", admin_deploy, methods=["POST"]),
    Route("/v1/admin/deploy", admin_deploy_status, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]


async def request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def unsupported_retrieval(request: Request, exc: Exception) -> Response:
    return error_response(422, "invalid_request", str(exc))


async def backend_unavailable(request: Request, exc: Exception) -> Response:
    return error_response(503, "backend_unavailable", str(exc))


async def overloaded(request: Request, exc: Exception) -> Response:
    """Refused at once rather than queued past its usefulness; `Retry-After` says when to come back."""
    assert isinstance(exc, Overloaded)
    return error_response(429, "overloaded", str(exc), {"Retry-After": str(int(exc.retry_after_s))})


async def no_reranker(request: Request, exc: Exception) -> Response:
    """The build cannot do it, whatever the request: 501, and the code says what is missing."""
    assert isinstance(exc, NoReranker)
    return error_response(501, exc.code, str(exc))


async def deadline_exceeded(request: Request, exc: Exception) -> Response:
    """`/v1/rerank` has no retrieval order to fall back on: past its deadline it is a 504."""
    return error_response(504, "deadline_exceeded", str(exc))


async def deploy_refused(request: Request, exc: Exception) -> Response:
    """A live swap refused (the old version still serving): its status, code and reason."""
    assert isinstance(exc, DeployError)
    return error_response(exc.status, exc.code, str(exc))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)  # a 405 keeps its Allow


async def server_error(request: Request, exc: Exception) -> Response:
    """The client gets no trace; Starlette re-raises, so the server logs it."""
    return error_response(500, "internal_error", "internal error; see the gateway log")


EXCEPTION_HANDLERS = {
    RequestError: request_error,
    UnsupportedRetrieval: unsupported_retrieval,
    BackendUnavailable: backend_unavailable,
    Overloaded: overloaded,
    NoReranker: no_reranker,
    DeadlineExceeded: deadline_exceeded,
    DeployError: deploy_refused,
    HTTPException: http_error,
    Exception: server_error,
}
