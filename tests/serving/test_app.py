"""The gateway end to end: httpx → Starlette app → real embedded Triton → real FAISS index."""

import asyncio
from dataclasses import replace

import httpx
import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.config import GatewaySettings
from ranking_gateway.serving.app import create_app
from ranking_gateway.serving.plan import PlanError
from ranking_gateway.serving.triton_server import free_port
from tests.conftest import SLOW_CI_DEADLINE_MS, gateway_client

pytestmark = pytest.mark.anyio


async def search(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await client.post("/v1/search", json=body)


async def test_search_returns_reranked_results(client: httpx.AsyncClient) -> None:
    r = await search(client, query="what makes a volcano erupt", k=5, candidates=20)
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"request_id", "results", "cached", "degraded", "timings_ms"}
    assert len(body["results"]) == 5 and not body["cached"] and not body["degraded"] and body["reranked"]
    first = body["results"][0]
    assert set(first) == {"id", "score", "retrieval_score", "title", "snippet"}
    assert set(body["timings_ms"]) >= {"encode", "retrieve", "rerank", "total"}
    scores = [res["score"] for res in body["results"]]
    assert scores == sorted(scores, reverse=True)


async def test_query_longer_than_the_token_budget_is_truncated(client: httpx.AsyncClient, artifacts: ArtifactPaths) -> None:
    """The models see the head of a long query that fits their budgets: the answer is the head's."""
    import math

    from tokenizers import Tokenizer

    from ranking_gateway.core.artifacts import Manifest

    tokenizer = Tokenizer.from_file(str(artifacts.tokenizer("reranker") / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokens = lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)  # noqa: E731
    budget = Manifest.read(artifacts.root).reranker.max_length - 3  # [CLS] query [SEP] doc [SEP]; the encoder keeps less
    head = "volcanic eruptions of magma through the crust"
    fits = head + " the" * (budget - tokens(head))  # stopwords: BM25 ignores them, only the models see them
    long_query = fits + " the" * 100
    assert tokens(fits) == budget < tokens(long_query) and len(long_query) <= 1024
    long_body, fits_body = [(await search(client, query=q, k=5, candidates=10)).json() for q in (long_query, fits)]
    for body in (long_body, fits_body):
        assert body["reranked"] and not body["degraded"] and len(body["results"]) == 5, body
        assert all(math.isfinite(r["score"]) for r in body["results"])
    assert [r["id"] for r in long_body["results"]] == [r["id"] for r in fits_body["results"]]
    assert [r["score"] for r in long_body["results"]] == pytest.approx([r["score"] for r in fits_body["results"]], rel=1e-5)


async def test_retrieval_only_ranks_by_dense_similarity(client: httpx.AsyncClient) -> None:
    body = (await search(client, query="earthquakes and tectonic plates", k=3, rerank=False, retrieval="dense")).json()
    assert body["results"][0]["id"] == "geology-0"
    assert not body["reranked"] and body["retrieval"] == "dense" and "lexical" not in body["timings_ms"]
    assert [r["score"] for r in body["results"]] == [r["retrieval_score"] for r in body["results"]]


async def test_rerank_alpha_blends_logits_with_retrieval(artifacts: ArtifactPaths, triton) -> None:
    query = {"query": "volcanic eruptions and magma", "k": 10, "candidates": 10}
    base = GatewaySettings(artifacts=artifacts.root, triton_timeout_s=120, deadline_ms=SLOW_CI_DEADLINE_MS)
    async with gateway_client(replace(base, rerank_alpha=0.0), triton.grpc_url) as client:
        blended_zero = (await search(client, **query)).json()
        dense = (await search(client, **query, rerank=False)).json()
    async with gateway_client(replace(base, rerank_alpha=1.0), triton.grpc_url) as client:
        pure = (await search(client, **query)).json()
    # alpha 0: reranked, but in retrieval order; alpha 1: the (untrained) reranker's own order
    assert blended_zero["reranked"] and [r["id"] for r in blended_zero["results"]] == [r["id"] for r in dense["results"]]
    assert [r["id"] for r in pure["results"]] != [r["id"] for r in dense["results"]]


async def test_hot_query_is_served_from_cache(client: httpx.AsyncClient) -> None:
    first = (await search(client, query="Insulin and diabetes", k=3)).json()
    second = (await search(client, query="  insulin   AND diabetes ", k=3)).json()
    assert not first["cached"] and second["cached"]
    assert [r["id"] for r in first["results"]] == [r["id"] for r in second["results"]]
    assert second["request_id"] != first["request_id"]
    metrics = (await client.get("/metrics")).text
    assert "ranking_gateway_cache_hits_total 1.0" in metrics
    assert 'ranking_gateway_stage_latency_seconds_count{stage="rerank"}' in metrics


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b'{"k": 3}', 422, "invalid_request"),
        (b'{"query": ""}', 422, "invalid_request"),
        (b'{"query": "' + b"x" * 2000 + b'"}', 422, "invalid_request"),
        (b'{"query": "q", "k": 0}', 422, "invalid_request"),
        (b'{"query": "q", "k": 1000}', 422, "invalid_request"),
        (b'{"query": "q", "candidates": 0}', 422, "invalid_request"),
        (b'{"query": "q", "candidates": 100000}', 422, "invalid_request"),
        (b'{"query": "q", "filter": "x"}', 422, "unknown_field"),
        (b'{"query": "q", "retrieval": "sparse"}', 422, "invalid_request"),
    ],
)
async def test_bad_requests_get_json_errors(client: httpx.AsyncClient, content: bytes, status: int, code: str) -> None:
    r = await client.post("/v1/search", content=content, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    assert "ranking_gateway_cache_misses_total 0.0" in (await client.get("/metrics")).text


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/nothing")).json()["error"]["code"] == "not_found"
    r = await client.get("/v1/search")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"] == {"query_encoder": True, "reranker": True} and ready.json()["documents"] == 30


async def test_triton_batches_concurrent_rerank_requests(client: httpx.AsyncClient) -> None:
    models = client.app.state.gateway.models  # type: ignore[attr-defined]

    async def counts() -> tuple[int, int]:
        stats = (await models.inference_statistics("reranker"))["model_stats"][0]
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))

    inferences_before, executions_before = await counts()
    while (inferences_before, executions_before) != (settled := await counts()):  # earlier tests' work drains
        inferences_before, executions_before = settled
        await asyncio.sleep(0.5)
    queries = [f"question number {i} about stars, bread and rocks" for i in range(8)]
    responses = await asyncio.gather(*(search(client, query=q, k=5, candidates=30) for q in queries))
    assert all(r.status_code == 200 and r.json()["reranked"] for r in responses), [r.text[-300:] for r in responses]
    inferences, executions = await counts()
    inferences -= inferences_before
    executions -= executions_before
    assert inferences == 8 * 30, (inferences, executions)  # every pair scored once
    assert executions < inferences / 16, (inferences, executions)  # chunks of 16, merged by the batcher


async def test_triton_unreachable_falls_back_to_bm25_else_503(
    artifacts: ArtifactPaths, legacy_artifacts: ArtifactPaths
) -> None:
    """No query vector: a build with a BM25 index still answers (BM25 alone, flagged), one
    without it cannot (503); neither answer is cached and readiness says Triton is down."""
    settings = GatewaySettings(artifacts=artifacts.root, triton_timeout_s=2.0)
    async with gateway_client(settings, f"127.0.0.1:{free_port()}") as client:
        for _ in range(2):
            r = await search(client, query="volcano lava")
            body = r.json()
            assert r.status_code == 200 and body["retrieval"] == "bm25" and body["results"] and not body["cached"]
            assert body["degraded"] and body["degraded_reasons"] == ["encoder_unavailable", "reranker_unavailable"]
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["ready"] is False
    async with gateway_client(replace(settings, artifacts=legacy_artifacts.root), f"127.0.0.1:{free_port()}") as client:
        r = await search(client, query="volcano")
        assert r.status_code == 503 and r.json()["error"]["code"] == "backend_unavailable"


async def test_a_search_past_its_deadline_answers_on_time_in_retrieval_order(artifacts: ArtifactPaths, triton) -> None:
    """`timeout_ms` too short for the models: the answer still comes, in BM25 order, flagged
    with what was skipped, and is not cached (the next search with time to spare is reranked)."""
    settings = GatewaySettings(artifacts=artifacts.root, triton_timeout_s=120, deadline_ms=120_000)
    async with gateway_client(settings, triton.grpc_url) as client:
        started = asyncio.get_running_loop().time()
        late = await search(client, query="volcano eruption fact", k=3, candidates=10, timeout_ms=1)
        elapsed = asyncio.get_running_loop().time() - started
        body = late.json()
        assert late.status_code == 200 and body["degraded"] and not body["reranked"] and len(body["results"]) == 3
        assert "rerank_deadline" in body["degraded_reasons"] and body["degraded_reasons"][0] in (
            "encoder_deadline", "rerank_deadline"
        )
        assert elapsed < 5  # no stage ran to completion (a generous bound for a shared CI machine)
        again = (await search(client, query="volcano eruption fact", k=3, candidates=10)).json()
        assert again["reranked"] and not again["degraded"] and not again["cached"] and again["degraded_reasons"] == []
        metrics = (await client.get("/metrics")).text
        assert 'ranking_gateway_degraded_responses_total{reason="rerank_deadline"}' in metrics


async def test_the_serve_deadline_applies_when_the_request_sets_none(artifacts: ArtifactPaths, triton) -> None:
    settings = GatewaySettings(artifacts=artifacts.root, triton_timeout_s=120, deadline_ms=1)
    async with gateway_client(settings, triton.grpc_url) as client:
        body = (await search(client, query="volcano eruption fact", k=3, candidates=10)).json()
        assert body["degraded"] and "rerank_deadline" in body["degraded_reasons"]
        roomy = (await search(client, query="volcano eruption fact", k=3, candidates=10, timeout_ms=60_000)).json()
        assert roomy["reranked"] and not roomy["degraded"]


def ids(body: dict) -> list[str]:
    return [r["id"] for r in body["results"]]


# "stirring" occurs only in cooking-1 (risotto); the rest of the query pulls dense retrieval to astronomy
LEXICAL_ONLY = {"query": "orbiting planetary satellites stirring", "k": 3, "candidates": 3, "rerank": False}


async def test_hybrid_finds_the_lexical_match_dense_misses(client: httpx.AsyncClient) -> None:
    dense = (await search(client, **LEXICAL_ONLY, retrieval="dense")).json()
    bm25 = (await search(client, **LEXICAL_ONLY, retrieval="bm25")).json()
    hybrid = (await search(client, **LEXICAL_ONLY)).json()  # the default on a build with a BM25 index
    assert (dense["retrieval"], bm25["retrieval"], hybrid["retrieval"]) == ("dense", "bm25", "hybrid")
    assert "cooking-1" not in ids(dense) and all(i.startswith("astronomy") for i in ids(dense))
    assert ids(bm25) == ["cooking-1"] and bm25["timings_ms"]["encode"] == 0.0  # BM25 alone encodes nothing
    assert "cooking-1" in ids(hybrid) and set(ids(hybrid)) - {"cooking-1"} <= set(ids(dense))
    # retrieval_score is the RRF score: 1/(60 + rank) summed over the lists a document is in
    fused = {r["id"]: r["retrieval_score"] for r in hybrid["results"]}
    assert fused["cooking-1"] == pytest.approx(1 / 61) and max(fused.values()) <= 2 / 61
    assert hybrid["timings_ms"]["retrieve"] >= hybrid["timings_ms"]["lexical"] > 0
    assert 'ranking_gateway_stage_latency_seconds_count{stage="lexical"}' in (await client.get("/metrics")).text


async def test_hybrid_reranks_and_caches_per_mode(client: httpx.AsyncClient) -> None:
    query = {"query": "planets orbiting distant suns while stirring", "k": 5, "candidates": 10}
    first = (await search(client, **query)).json()
    assert first["reranked"] and first["retrieval"] == "hybrid" and not first["cached"]
    assert (await search(client, **query, retrieval="hybrid")).json()["cached"]  # same key as the default
    dense = (await search(client, **query, retrieval="dense")).json()
    assert not dense["cached"] and dense["retrieval"] == "dense"


async def test_cache_key_differs_by_retrieval_mode_and_rerank_max_length(artifacts: ArtifactPaths, triton) -> None:
    from ranking_gateway.serving.schemas import SearchRequest

    base = GatewaySettings(artifacts=artifacts.root, triton_timeout_s=120, deadline_ms=SLOW_CI_DEADLINE_MS)
    request = SearchRequest("volcanic eruptions", 5, 20, True, None)

    def key(pipeline, req: SearchRequest) -> str:
        return pipeline.cache_key(req, pipeline.plan.retrieval_for(req.retrieval))

    async with gateway_client(base, triton.grpc_url) as client:
        pipeline = client.app.state.gateway.search  # type: ignore[attr-defined]
        keys = {mode: key(pipeline, replace(request, retrieval=mode)) for mode in (None, "dense", "bm25", "hybrid")}
        full_length = key(pipeline, request)
        unreranked = key(pipeline, replace(request, rerank=False))
        assert pipeline.reranker.tokenizer.max_length == 128  # the build's
        assert (await client.get("/readyz")).json()["rerank"]["max_length"] == 128
    assert keys[None] == keys["hybrid"] and len({keys["dense"], keys["bm25"], keys["hybrid"]}) == 3
    async with gateway_client(replace(base, rerank_max_length=64), triton.grpc_url) as client:
        pipeline = client.app.state.gateway.search  # type: ignore[attr-defined]
        assert pipeline.reranker.tokenizer.max_length == 64
        assert (await client.get("/readyz")).json()["rerank"]["max_length"] == 64
        assert key(pipeline, request) != full_length
        assert key(pipeline, replace(request, rerank=False)) == unreranked  # no reranker, no length
        long_doc = " ".join(["magma rises through the crust"] * 40)
        assert pipeline.reranker.tokenizer.encode_pairs("volcano", [long_doc]).attention_mask.sum() == 64
        body = (await search(client, query="volcanic eruptions", k=5, candidates=20)).json()
        assert body["reranked"] and not body["degraded"]
    with pytest.raises(PlanError, match="128"):  # never past the build's length: its compiled model stops there
        create_app(replace(base, rerank_max_length=512), triton.grpc_url)


async def test_artifacts_without_bm25_serve_dense_only(legacy_artifacts: ArtifactPaths, triton) -> None:
    settings = GatewaySettings(
        artifacts=legacy_artifacts.root, triton_timeout_s=120, deadline_ms=SLOW_CI_DEADLINE_MS
    )
    async with gateway_client(settings, triton.grpc_url) as client:
        body = (await search(client, **LEXICAL_ONLY)).json()
        assert body["retrieval"] == "dense" and "cooking-1" not in ids(body)
        assert (await client.get("/readyz")).json()["retrieval"] == "dense"
        for mode in ("hybrid", "bm25"):
            r = await search(client, **LEXICAL_ONLY, retrieval=mode)
            assert r.status_code == 422 and "BM25" in r.json()["error"]["message"]
    with pytest.raises(PlanError, match="BM25"):  # asked for at start-up: a one-line error before anything starts
        create_app(replace(settings, retrieval="hybrid"), triton.grpc_url)


async def test_past_the_admission_bound_searches_get_429_at_once_but_cached_ones_and_health_do_not(
    artifacts: ArtifactPaths, triton
) -> None:
    """One ranking in flight and no queue: of eight distinct queries sent at once, the ones that
    find the slot taken are refused with Retry-After; a cached query and /healthz still answer."""
    from ranking_gateway.core.config import AdmissionSettings

    settings = GatewaySettings(
        artifacts=artifacts.root, triton_timeout_s=120, deadline_ms=SLOW_CI_DEADLINE_MS,
        admission=AdmissionSettings(max_inflight=1, max_queue=0),
    )
    async with gateway_client(settings, triton.grpc_url) as client:
        warm = await search(client, query="volcano eruption", k=3, candidates=10)
        assert warm.status_code == 200
        words = ("lava", "ash", "magma", "crater", "plume", "vent", "dome", "cone")
        queries = [f"volcano eruption {word}" for word in words]
        answers = await asyncio.gather(
            *(search(client, query=q, k=3, candidates=10) for q in queries),
            search(client, query="volcano eruption", k=3, candidates=10),
            client.get("/healthz"),
        )
        *searched, cached, health = answers
        refused = [r for r in searched if r.status_code == 429]
        assert refused and all(r.status_code in (200, 429) for r in searched)
        assert all(r.json()["error"]["code"] == "overloaded" and int(r.headers["retry-after"]) >= 1 for r in refused)
        assert cached.status_code == 200 and cached.json()["cached"] and health.status_code == 200
        gate = client.app.state.gateway.search.gate  # type: ignore[attr-defined]
        assert (gate.inflight, gate.queued) == (0, 0)  # nothing leaked
        metrics = (await client.get("/metrics")).text
        assert 'ranking_gateway_requests_total{route="/v1/search",status="429"}' in metrics


async def test_what_the_gateway_loaded_is_out_of_the_collectors_reach(client: httpx.AsyncClient) -> None:
    """A full collection over the loaded index stalls every request in flight (38 ms measured on
    SciFact); the lifespan freezes what it loaded, so collections scan only request garbage."""
    import gc

    assert gc.get_freeze_count() > 0
