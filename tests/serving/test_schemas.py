import pytest

from ranking_gateway.core.config import SearchLimits
from ranking_gateway.serving.schemas import RequestError, SearchRequest

LIMITS = SearchLimits(max_query_chars=50, max_k=20, max_candidates=200)


def test_defaults() -> None:
    req = SearchRequest.parse({"query": "volcano"}, LIMITS)
    assert (req.query, req.k, req.candidates, req.rerank, req.user_id) == ("volcano", 10, 100, True, None)
    assert req.retrieval is None  # the gateway's --retrieval


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_retrieval_per_request(mode: str) -> None:
    assert SearchRequest.parse({"query": "q", "retrieval": mode}, LIMITS).retrieval == mode


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ([], "invalid_request", "JSON object"),
        ({}, "invalid_request", "'query' is required"),
        ({"query": 3}, "invalid_request", "'query' must be a string"),
        ({"query": "   "}, "invalid_request", "must not be empty"),
        ({"query": "x" * 51}, "invalid_request", "longer than 50"),
        ({"query": "q", "k": 0}, "invalid_request", "'k' must be between 1 and 20"),
        ({"query": "q", "k": 21}, "invalid_request", "'k' must be between"),
        ({"query": "q", "k": "5"}, "invalid_request", "'k' must be an integer"),
        ({"query": "q", "k": True}, "invalid_request", "'k' must be an integer"),
        ({"query": "q", "candidates": 201}, "invalid_request", "'candidates' must be between"),
        ({"query": "q", "k": 20, "candidates": 5}, "invalid_request", "must not exceed"),
        ({"query": "q", "rerank": "yes"}, "invalid_request", "'rerank' must be a boolean"),
        ({"query": "q", "user_id": ""}, "invalid_request", "'user_id'"),
        ({"query": "q", "colour": "red"}, "unknown_field", "colour"),
        ({"query": "q", "retrieval": "sparse"}, "invalid_request", "'retrieval' must be one of dense, bm25, hybrid"),
        ({"query": "q", "retrieval": ["dense"]}, "invalid_request", "'retrieval'"),
    ],
)
def test_rejections(body: object, code: str, fragment: str) -> None:
    with pytest.raises(RequestError) as info:
        SearchRequest.parse(body, LIMITS)
    assert info.value.status == 422 and info.value.code == code and fragment in info.value.message
