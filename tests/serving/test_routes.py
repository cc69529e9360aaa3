"""The HTTP edge refuses hostile input with JSON 4xx before anything past it runs: the routes and
exception handlers over a gateway that only has its limits (whatever else is touched fails)."""

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from ranking_gateway.core.config import SearchLimits
from ranking_gateway.serving.routes import EXCEPTION_HANDLERS, ROUTES
from ranking_gateway.serving.schemas import MAX_BODY_BYTES


class Untouchable:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"a refused request reached {name}")


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = Starlette(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    doc_exists = SimpleNamespace(has_document=lambda doc_id: True)  # read before the body is parsed
    app.state.gateway = SimpleNamespace(
        limits=SearchLimits(), search=Untouchable(), rerank=Untouchable(), personalization=doc_exists, api_keys=None
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def post(client: TestClient, path: str, content: bytes) -> tuple[int, dict]:
    r = client.post(path, content=content, headers={"content-type": "application/json"})
    return r.status_code, r.json()["error"]


EVENT = b'"doc_id": "d", "type": "click"'


@pytest.mark.parametrize(
    ("path", "content", "field"),
    [
        ("/v1/search", b'{"query": "\\ud800"}', "query"),
        ("/v1/search", b'{"query": "volcano \\udfff\\ud800"}', "query"),
        ("/v1/search", b'{"query": "q", "user_id": "\\udc00"}', "user_id"),
        ("/v1/events", b'{"user_id": "\\ud800", ' + EVENT + b"}", "user_id"),
        ("/v1/events", b'{"user_id": "u", "doc_id": "\\ud800", "type": "click"}', "doc_id"),
        ("/v1/events", b'{"user_id": "u", ' + EVENT + b', "request_id": "\\ud800"}', "request_id"),
        ("/v1/search", b'{"query": "a\\u0000b"}', "query"),
        ("/v1/events", b'{"user_id": "a\\nb", ' + EVENT + b"}", "user_id"),
        ("/v1/rerank", b'{"query": "\\ud800", "documents": ["lava"]}', "query"),
        ("/v1/rerank", b'{"query": "q", "documents": ["lava", "ash \\udfff"]}', "documents[1]"),
        ("/v1/rerank", b'{"query": "q", "documents": ["lava\\u0000"]}', "documents[0]"),
    ],
)
def test_unencodable_or_control_text_is_a_422_not_a_500(
    client: TestClient, path: str, content: bytes, field: str
) -> None:
    status, error = post(client, path, content)
    assert (status, error["code"]) == (422, "invalid_request") and f"'{field}'" in error["message"]


@pytest.mark.parametrize("user_id", ["a%00b", "%1B", "a%0Ab", "%C2%85"])
def test_a_path_user_id_with_a_control_character_is_a_422(client: TestClient, user_id: str) -> None:
    for r in (client.get(f"/v1/users/{user_id}/profile"), client.delete(f"/v1/users/{user_id}")):
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 50_000,  # past the parser's recursion limit
        b'{"query": "q", "k": ' + b"9" * 5000 + b"}",  # past Python's int digit limit
        b'{"query": "\xff"}',  # not UTF-8
        b"",
    ],
    ids=["deep", "huge-int", "not-utf8", "empty"],
)
def test_json_the_parser_refuses_is_a_400(client: TestClient, content: bytes) -> None:
    assert post(client, "/v1/search", content)[1]["code"] == "invalid_json"
    assert post(client, "/v1/events", content)[0] == 400


def test_a_body_over_the_limit_is_a_413_declared_or_streamed(client: TestClient) -> None:
    big = b'{"query": "' + b"x" * MAX_BODY_BYTES + b'"}'
    status, error = post(client, "/v1/search", big)
    assert (status, error["code"]) == (413, "body_too_large")
    chunked = client.post("/v1/search", content=iter([big[:40_000], big[40_000:]]))  # no content-length
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "body_too_large"


def test_rerank_reads_a_larger_body_than_the_other_routes_but_not_past_its_own_limit(client: TestClient) -> None:
    """Ten long documents are past the 64 KiB of the other routes: the rerank body is bounded by
    its own limits (every document at its longest), still before anything is parsed."""
    limits = SearchLimits()
    docs = ", ".join(['"' + "lava " * 1600 + '"'] * 10)  # 10 x 8,000 characters: 80 KB
    status, error = post(client, "/v1/rerank", f'{{"query": "q", "documents": [{docs}], "top_n": 0}}'.encode())
    assert (status, error["code"]) == (422, "invalid_request") and "'top_n'" in error["message"]  # read, then refused
    assert post(client, "/v1/search", f'{{"query": "q", "documents": [{docs}]}}'.encode())[0] == 413
    big = b'{"query": "q", "documents": ["' + b"x" * limits.max_rerank_body_bytes + b'"]}'
    status, error = post(client, "/v1/rerank", big)
    assert (status, error["code"]) == (413, "body_too_large") and str(limits.max_rerank_body_bytes) in error["message"]
    chunks = iter([big[:1 << 20], big[1 << 20 :]])  # no content-length: refused while streaming
    streamed = client.post("/v1/rerank", content=chunks)
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "body_too_large"
