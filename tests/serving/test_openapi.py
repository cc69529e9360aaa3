"""The OpenAPI document: every registered route, a valid OpenAPI 3.1 document, and the running
gateway's limits in it. (That the served answers match it: tests/serving/test_fuzz.py.)"""

from types import SimpleNamespace

import jsonschema_rs
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR
from starlette.applications import Starlette
from starlette.testclient import TestClient

from ranking_gateway.core.config import SearchLimits
from ranking_gateway.serving.openapi import openapi_document
from ranking_gateway.serving.routes import EXCEPTION_HANDLERS, ROUTES

ENDPOINTS = [(method, route.path) for route in ROUTES for method in route.methods or () if method != "HEAD"]
LIMITS = SearchLimits(max_query_chars=77, max_k=7, max_candidates=99, default_k=3, default_candidates=50)


def document(limits: SearchLimits = LIMITS) -> dict:
    return openapi_document(limits, ENDPOINTS)


def test_every_route_is_documented_and_nothing_else() -> None:
    doc = document()
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert documented == set(ENDPOINTS)
    assert ("GET", "/openapi.json") in documented


def test_a_route_without_an_operation_fails_loudly() -> None:
    with pytest.raises(KeyError, match="/v1/new"):
        openapi_document(LIMITS, [*ENDPOINTS, ("GET", "/v1/new")])


def test_it_is_a_valid_openapi_3_1_document_with_valid_schemas() -> None:
    doc = document()
    OPENAPI_31_VALIDATOR.validate(doc)
    for name, schema in doc["components"]["schemas"].items():
        jsonschema_rs.meta.validate(schema)  # a valid JSON Schema (2020-12)
        assert "$ref" not in str(schema), name  # self-contained: nothing dangles


def test_search_bounds_are_the_gateways_limits() -> None:
    body = document()["components"]["schemas"]["SearchRequest"]
    props = body["properties"]
    assert body["required"] == ["query"] and body["additionalProperties"] is False
    assert props["query"]["maxLength"] == 77
    assert (props["k"]["minimum"], props["k"]["maximum"], props["k"]["default"]) == (1, 7, 3)
    assert (props["candidates"]["maximum"], props["candidates"]["default"]) == (99, 50)
    assert props["retrieval"]["enum"] == ["dense", "bm25", "hybrid", None]
    assert document(SearchLimits())["components"]["schemas"]["SearchRequest"]["properties"]["k"]["maximum"] == 100


def test_rerank_bounds_are_the_gateways_limits() -> None:
    limits = SearchLimits(max_query_chars=77, max_rerank_documents=12, max_document_chars=500)
    doc = document(limits)
    body = doc["components"]["schemas"]["RerankRequest"]
    props = body["properties"]
    assert body["required"] == ["query", "documents"] and body["additionalProperties"] is False
    assert props["query"]["maxLength"] == 77 and props["top_n"]["maximum"] == 12
    assert (props["documents"]["maxItems"], props["documents"]["items"]["maxLength"]) == (12, 500)
    assert "pattern" in props["documents"]["items"]  # the text rule, in every document
    result = doc["components"]["schemas"]["RerankResponse"]["properties"]["results"]["items"]
    assert set(result["properties"]) == {"index", "relevance_score", "document"}
    assert result["required"] == ["index", "relevance_score"]
    too_large = doc["paths"]["/v1/rerank"]["post"]["responses"]["413"]["description"]
    assert str(limits.max_rerank_body_bytes) in too_large


def test_operations_document_their_errors() -> None:
    paths = document()["paths"]
    statuses = {(m, p): set(op["responses"]) for p, item in paths.items() for m, op in item.items()}
    assert statuses["post", "/v1/search"] == {"200", "400", "413", "422", "429", "503"}
    assert "Retry-After" in paths["/v1/search"]["post"]["responses"]["429"]["headers"]
    assert statuses["post", "/v1/rerank"] == {"200", "400", "413", "422", "429", "501", "503", "504"}
    assert "Retry-After" in paths["/v1/rerank"]["post"]["responses"]["429"]["headers"]
    for code in ("no_reranker", "no_document_encoder"):
        assert code in paths["/v1/rerank"]["post"]["responses"]["501"]["description"]
    assert "deadline_exceeded" in paths["/v1/rerank"]["post"]["responses"]["504"]["description"]
    assert statuses["post", "/v1/events"] == {"202", "400", "404", "413", "422", "503"}
    assert statuses["get", "/v1/users/{user_id}/profile"] == {"200", "404", "422", "503"}
    assert statuses["delete", "/v1/users/{user_id}"] == {"200", "404", "422", "503"}
    assert statuses["get", "/readyz"] == {"200", "503"}
    error = {"$ref": "#/components/schemas/Error"}
    assert paths["/v1/search"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == error
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert "Allow" in document()["components"]["responses"]["MethodNotAllowed"]["headers"]


def test_error_schema_matches_what_the_handlers_render() -> None:
    """The routes' answers for a 404, a 405 (with Allow) and a 422, checked against the document."""
    app = Starlette(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    app.state.gateway = SimpleNamespace(limits=LIMITS, api_keys=None)  # all that /openapi.json and parsing read
    with TestClient(app) as client:
        doc = client.get("/openapi.json").json()
        assert doc == document()
        error = jsonschema_rs.validator_for(doc["components"]["schemas"]["Error"])
        not_found, wrong_method = client.get("/v1/nothing"), client.put("/v1/search")
        bad_id = client.get("/v1/users/a%00b/profile")
        assert (not_found.status_code, wrong_method.status_code, bad_id.status_code) == (404, 405, 422)
        assert wrong_method.headers["allow"] == "POST"
        for answer in (not_found, wrong_method, bad_id):
            error.validate(answer.json())
