"""`GET /openapi.json`: the OpenAPI 3.1 document of the gateway, generated from the bodies in
`schemas` (the ones validation enforces) and the running gateway's `SearchLimits`, so what it
documents is what the server answers. Only the per-route prose and status codes live here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ranking_gateway import __version__
from ranking_gateway.core.config import SearchLimits
from ranking_gateway.serving import schemas
from ranking_gateway.serving.schemas import Shape

TEXT = "text"  # a plain-text answer instead of a JSON shape


@dataclass(frozen=True)
class Answer:
    description: str
    body: Shape | str  # a Shape, or TEXT
    headers: dict[str, str] | None = None  # name: description (all strings)


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: dict[int, Answer]
    body: Shape | None = None
    path_user_id: bool = False
    tags: tuple[str, ...] = ()
    security: bool = False  # needs the API key (`serve --api-key-file`)


def _error(description: str) -> Answer:
    return Answer(description, schemas.ERROR)


# the error answers several routes share; each names its `error.code`s
BAD_JSON = _error("`invalid_json`: the body is not JSON (or not UTF-8, or nested too deeply).")
TOO_LARGE = _error(f"`body_too_large`: the body is over {schemas.MAX_BODY_BYTES} bytes.")
INVALID = _error("`invalid_request` (a field breaks its rule; the message names it) or `unknown_field`.")
INVALID_ID = _error("`invalid_request`: the user id breaks the id text rule.")
UNAVAILABLE = _error("`backend_unavailable`: Triton or Redis cannot answer.")
OVERLOADED = Answer(
    "`overloaded`: as many searches as `serve --max-inflight` are being ranked and `--max-queue` wait; "
    "come back after `Retry-After` seconds (cached answers are never refused).",
    schemas.ERROR,
    headers={"Retry-After": "Seconds to wait before retrying."},
)
NO_ROUTE = _error("`not_found`: no such route (a user id holding `/` cannot be addressed in a path).")


def operations(limits: SearchLimits) -> dict[tuple[str, str], Operation]:
    """Every route's operation by (method, path)."""
    return {
        ("post", "/v1/search"): Operation(
            "Search: first stage, rerank, personalise",
            {200: Answer("The ranked results.", schemas.SEARCH_RESPONSE), 400: BAD_JSON, 413: TOO_LARGE,
             422: INVALID, 429: OVERLOADED, 503: UNAVAILABLE},
            body=schemas.search_body(limits),
            tags=("search",),
        ),
        ("post", "/v1/rerank"): Operation(
            "Rerank your own documents with the served reranker (TEI / Infinity / Cohere shape)",
            {200: Answer("The documents by relevance, the best first.", schemas.RERANK_RESPONSE), 400: BAD_JSON,
             413: _error(f"`body_too_large`: the body is over {limits.max_rerank_body_bytes} bytes."),
             422: INVALID, 429: OVERLOADED,
             501: _error("`no_reranker`: the build has no reranker; `no_document_encoder`: a late-interaction "
                         "build from before `/v1/rerank` (no `document_token_encoder`: rebuild)."),
             503: UNAVAILABLE,
             504: _error("`deadline_exceeded`: the scoring did not finish by `timeout_ms` (else `serve "
                         "--deadline-ms`) and was cancelled; there is no retrieval order to answer with instead.")},
            body=schemas.rerank_body(limits),
            tags=("search",),
        ),
        ("post", "/v1/events"): Operation(
            "Record feedback: durably logged and applied to the profile before the 202",
            {202: Answer("Logged and applied.", schemas.EVENT_ACCEPTED), 400: BAD_JSON,
             404: _error("`unknown_document`: `doc_id` is not in the served corpus."), 413: TOO_LARGE,
             422: INVALID, 503: UNAVAILABLE},
            body=schemas.EVENT_BODY,
            tags=("personalisation",),
        ),
        ("get", "/v1/users/{user_id}/profile"): Operation(
            "What the gateway believes about a user",
            {200: Answer("The profile.", schemas.PROFILE),
             404: _error("`no_profile`: nothing is known about this user; or `not_found` (no such route)."),
             422: INVALID_ID, 503: UNAVAILABLE},
            path_user_id=True,
            tags=("personalisation",),
        ),
        ("delete", "/v1/users/{user_id}"): Operation(
            "Erase a user: the profile and their records in the live event log",
            {200: Answer("What was erased.", schemas.ERASURE), 404: NO_ROUTE, 422: INVALID_ID, 503: UNAVAILABLE},
            path_user_id=True,
            tags=("personalisation",),
        ),
        ("post", "/v1/admin/deploy"): Operation(
            "Live swap: serve other artifacts (or personaliser weights) without a restart, or roll back",
            {200: Answer("Swapped: the new version serves, the old one is drained and its models unloaded.",
                         schemas.DEPLOY_REPORT),
             400: BAD_JSON, 413: TOO_LARGE,
             403: _error("`forbidden`: without `serve --api-key-file`, only loopback clients may deploy."),
             409: _error("`deploy_in_progress`, `already_serving` or `no_previous_version` (nothing to roll back to)."),
             422: _error("`invalid_request`/`unknown_field`; the candidate refused, the old version still serving: "
                         "`invalid_artifacts`, `model_load_failed`, `canary_failed`."),
             501: _error("`live_swap_unsupported`: an external Triton (`serve --triton-url`) without "
                         "`--triton-live-repository`, whose models the gateway does not manage."),
             503: _error("`models_not_ready`: Triton loaded the candidate's models but does not report them READY.")},
            body=schemas.DEPLOY_BODY,
            tags=("operations",),
        ),
        ("get", "/v1/admin/deploy"): Operation(
            "What is served, and what a rollback would go back to",
            {200: Answer("The serving and the previous version.", schemas.DEPLOY_STATUS),
             403: _error("`forbidden`: without `serve --api-key-file`, only loopback clients.")},
            tags=("operations",),
        ),
        ("get", "/healthz"): Operation("Liveness", {200: Answer("The process answers.", schemas.HEALTH)},
                                       tags=("operations",)),
        ("get", "/readyz"): Operation(
            "Readiness: every Triton model ready and the index loaded; what is served",
            {200: Answer("Ready.", schemas.READINESS), 503: Answer("Not ready (same body).", schemas.READINESS)},
            tags=("operations",),
        ),
        ("get", "/metrics"): Operation(
            "Prometheus metrics", {200: Answer("Prometheus text exposition format 0.0.4.", TEXT)},
            tags=("operations",),
        ),
        ("get", "/openapi.json"): Operation(
            "This document", {200: Answer("OpenAPI 3.1, with this gateway's search limits.", schemas.OPENAPI)},
            tags=("operations",),
        ),
    }


def _ref(shape: Shape) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{shape.name}"}


def _content(body: Shape | str) -> dict[str, Any]:
    if isinstance(body, str):
        return {"text/plain": {"schema": {"type": "string"}}}
    return {"application/json": {"schema": _ref(body)}}


def _operation(op: Operation, shapes: dict[str, Shape]) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "tags": list(op.tags), "responses": {}}
    if op.security:
        out["security"] = [{"apiKey": []}]
    if op.path_user_id:
        out["parameters"] = [
            {"name": "user_id", "in": "path", "required": True, "schema": schemas.USER_ID_PATH.json_schema()}
        ]
    if op.body is not None:
        shapes[op.body.name] = op.body
        out["requestBody"] = {"required": True, "content": _content(op.body)}
    for status, answer in sorted(op.responses.items()):
        response: dict[str, Any] = {"description": answer.description, "content": _content(answer.body)}
        if answer.headers:
            response["headers"] = {
                name: {"description": text, "schema": {"type": "string"}} for name, text in answer.headers.items()
            }
        if isinstance(answer.body, Shape):
            shapes[answer.body.name] = answer.body
        out["responses"][str(status)] = response
    return out


UNAUTHORIZED = Answer("`unauthorized`: no `Authorization: Bearer <key>` (`serve --api-key-file`).", schemas.ERROR,
                      headers={"WWW-Authenticate": "`Bearer`."})
FORBIDDEN = _error("`forbidden`: the API key is not valid.")


def openapi_document(
    limits: SearchLimits, endpoints: Iterable[tuple[str, str]], protected: Iterable[tuple[str, str]] = ()
) -> dict[str, Any]:
    """The document for these (method, path) endpoints: the routes as registered, each of which
    must have an `Operation` here (a route added without one fails loudly, not silently).
    `protected` ones need an API key on this gateway: they get the bearer scheme, 401 and 403."""
    endpoints = list(dict.fromkeys((method.lower(), path) for method, path in endpoints))
    protected = {(method.lower(), path) for method, path in protected}
    known = operations(limits)
    for key in protected & set(known):
        op = known[key]
        known[key] = Operation(op.summary, {**op.responses, 401: UNAUTHORIZED, 403: FORBIDDEN}, op.body,
                               op.path_user_id, op.tags, security=True)
    missing = sorted(set(endpoints) - set(known))
    if missing:
        raise KeyError(f"routes without an OpenAPI operation: {missing}")
    shapes: dict[str, Shape] = {schemas.ERROR.name: schemas.ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for method, path in endpoints:
        paths.setdefault(path, {})[method] = _operation(known[method, path], shapes)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ranking-gateway",
            "version": __version__,
            "description": (
                "Search with dense/BM25/hybrid retrieval, reranking and per-user personalisation; "
                "reranking of the caller's own documents (`/v1/rerank`). "
                "Every error is JSON `{\"error\": {\"code\", \"message\"}}`; an unknown route is 404 "
                "`not_found`, a method a path does not serve is 405 `method_not_allowed` with `Allow` "
                "(`components.responses`). "
                f"Request strings: {schemas.QUERY_TEXT.describe()} {schemas.ID_TEXT.describe()}"
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {name: shapes[name].json_schema() for name in sorted(shapes)},
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "A key from `serve --api-key-file`."}},
            # answers to requests no operation covers: an unknown path, a method a path does not serve
            "responses": {
                "NotFound": {"description": "`not_found`: no such route.", "content": _content(schemas.ERROR)},
                "MethodNotAllowed": {
                    "description": "`method_not_allowed`: the path does not serve this method.",
                    "headers": {"Allow": {"description": "The methods it serves.", "schema": {"type": "string"}}},
                    "content": _content(schemas.ERROR),
                },
            },
        },
    }
