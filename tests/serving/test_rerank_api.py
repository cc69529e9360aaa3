"""`POST /v1/rerank` end to end: httpx → the app → the real embedded Triton, for both kinds of
reranker (the session's cross-encoder build and its late-interaction build), with the refusals
(no reranker, deadline, admission) that a caller with their own first stage meets."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.config import AdmissionSettings, GatewaySettings
from ranking_gateway.core.contract import DOCUMENT_TOKENS
from ranking_gateway.core.token_store import TokenStore
from ranking_gateway.serving.rerank_api import order
from ranking_gateway.serving.triton_server import free_port
from tests.conftest import SLOW_CI_DEADLINE_MS, gateway_client

QUERY = "what makes a volcano erupt"
OUTSIDE = [  # documents no build has seen
    "Pasta water should be salted generously before the spaghetti goes in.",
    "Magma rising through the crust builds pressure until the volcano erupts in lava and ash.",
    "The stock market closed higher on Tuesday after the earnings reports.",
    "Volcanic eruptions happen when gas-rich magma forces its way to the surface.",
]


def settings(artifacts: ArtifactPaths, **kw: object) -> GatewaySettings:
    base: dict = {"artifacts": artifacts.root, "triton_timeout_s": 120, "deadline_ms": SLOW_CI_DEADLINE_MS,
                  "rerank_alpha": 1.0}
    return GatewaySettings(**{**base, **kw})


async def rerank(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await client.post("/v1/rerank", json=body)


def texts_by_id(artifacts: ArtifactPaths) -> dict[str, str]:
    rows = [json.loads(line) for line in artifacts.documents.read_text().splitlines()]
    return {r["_id"]: f"{r['title']}. {r['text']}" if r["title"] else r["text"] for r in rows}


def test_order_is_by_score_ties_in_request_order_and_top_n() -> None:
    scores = np.array([0.5, 2.0, 0.5, -1.0, 2.0], dtype=np.float32)
    assert [(h.index, h.score) for h in order(scores, None)] == [(1, 2.0), (4, 2.0), (0, 0.5), (2, 0.5), (3, -1.0)]
    assert [h.index for h in order(scores, 2)] == [1, 4] and len(order(scores, 50)) == 5


# --- a cross-encoder build -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_cross_encoder_scores_are_the_triton_logits_of_the_pairs(artifacts: ArtifactPaths, triton) -> None:
    """Corpus documents score what search's rerank stage gave them (alpha 1: the logits), and any
    document scores the logit Triton returns for its (query, document) pair."""
    texts = texts_by_id(artifacts)
    async with gateway_client(settings(artifacts), triton.grpc_url) as client:
        searched = (await client.post("/v1/search", json={"query": QUERY, "k": 10, "candidates": 10})).json()
        assert searched["reranked"] and not searched["degraded"]
        ids = [r["id"] for r in searched["results"]][::-1]  # another order than search's
        r = await rerank(client, query=QUERY, documents=[texts[i] for i in ids])
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"request_id", "results", "timings_ms"} and body["timings_ms"]["rerank"] > 0
        results = body["results"]
        assert sorted(h["index"] for h in results) == list(range(10))
        assert set(results[0]) == {"index", "relevance_score"}
        served = [h["relevance_score"] for h in results]
        assert served == sorted(served, reverse=True)
        by_id = {h["id"]: h["score"] for h in searched["results"]}
        np.testing.assert_allclose([h["relevance_score"] for h in results], [by_id[ids[h["index"]]] for h in results],
                                   atol=1e-4)

        gw = client.app.state.gateway  # type: ignore[attr-defined]
        outside = (await rerank(client, query=QUERY, documents=OUTSIDE)).json()["results"]
        logits = await gw.models.rerank(gw.search.reranker.tokenizer.encode_pairs(QUERY, OUTSIDE))
        assert [h["index"] for h in outside] == list(np.argsort(-logits, kind="stable"))
        np.testing.assert_allclose([h["relevance_score"] for h in outside], np.sort(logits)[::-1], atol=1e-5)
        metrics = (await client.get("/metrics")).text
    assert 'ranking_gateway_requests_total{route="/v1/rerank",status="200"}' in metrics
    assert 'ranking_gateway_stage_latency_seconds_count{stage="rerank_api"}' in metrics


@pytest.mark.anyio
async def test_top_n_and_return_documents(artifacts: ArtifactPaths, triton) -> None:
    async with gateway_client(settings(artifacts), triton.grpc_url) as client:
        every = (await rerank(client, query=QUERY, documents=OUTSIDE)).json()["results"]
        top = (await rerank(client, query=QUERY, documents=OUTSIDE, top_n=2, return_documents=True)).json()["results"]
        past = (await rerank(client, query=QUERY, documents=OUTSIDE, top_n=50)).json()["results"]
        refused = await rerank(client, query=QUERY, documents=OUTSIDE, top_n=0)
    assert len(every) == len(past) == 4 and all("document" not in h for h in every)
    assert [h["index"] for h in top] == [h["index"] for h in every[:2]]
    assert [h["document"] for h in top] == [OUTSIDE[h["index"]] for h in top]
    assert refused.status_code == 422 and "'top_n'" in refused.json()["error"]["message"]


@pytest.mark.anyio
async def test_limits_and_bad_text_are_refused_before_triton(artifacts: ArtifactPaths, tmp_path: Path) -> None:
    """Refused at the edge: the gateway's Triton is an address nobody listens on."""
    async with gateway_client(settings(artifacts), f"127.0.0.1:{free_port()}") as client:
        limits = client.app.state.gateway.limits  # type: ignore[attr-defined]
        many = await rerank(client, query=QUERY, documents=["lava"] * (limits.max_rerank_documents + 1))
        long = await rerank(client, query=QUERY, documents=["ok", "x" * (limits.max_document_chars + 1)])
        bad = await client.post("/v1/rerank", content=b'{"query": "q", "documents": ["ok", "a\\ud800"]}')
        control = await rerank(client, query=QUERY, documents=["ok", "bell\x07"])
        blank = await rerank(client, query=QUERY, documents=[" \n"])
        down = await rerank(client, query=QUERY, documents=OUTSIDE)
    assert many.status_code == 422 and f"at most {limits.max_rerank_documents} items" in many.json()["error"]["message"]
    assert long.status_code == 422 and "'documents[1]' is longer than" in long.json()["error"]["message"]
    assert bad.status_code == 422 and "'documents[1]' contains a lone surrogate" in bad.json()["error"]["message"]
    assert control.status_code == 422 and "'documents[1]'" in control.json()["error"]["message"]
    assert blank.status_code == 422 and "non-blank" in blank.json()["error"]["message"]
    assert down.status_code == 503 and down.json()["error"]["code"] == "backend_unavailable"  # a valid call reached it


@pytest.mark.anyio
async def test_past_its_deadline_a_rerank_is_a_504_and_the_next_one_is_answered(
    artifacts: ArtifactPaths, triton
) -> None:
    async with gateway_client(settings(artifacts), triton.grpc_url) as client:
        started = asyncio.get_running_loop().time()
        late = await rerank(client, query=QUERY, documents=OUTSIDE, timeout_ms=1)
        elapsed = asyncio.get_running_loop().time() - started
        assert late.status_code == 504 and late.json()["error"]["code"] == "deadline_exceeded"
        assert elapsed < 5  # cancelled, not waited for (generous for a shared CI machine)
        assert (await rerank(client, query=QUERY, documents=OUTSIDE)).status_code == 200
        gate = client.app.state.gateway.rerank.gate  # type: ignore[attr-defined]
        assert (gate.inflight, gate.queued) == (0, 0)
    async with gateway_client(settings(artifacts, deadline_ms=1), triton.grpc_url) as client:  # serve's deadline
        assert (await rerank(client, query=QUERY, documents=OUTSIDE)).status_code == 504
        assert (await rerank(client, query=QUERY, documents=OUTSIDE, timeout_ms=60_000)).status_code == 200


@pytest.mark.anyio
async def test_past_the_admission_bound_reranks_get_429_at_once(artifacts: ArtifactPaths, triton) -> None:
    """Search's gate, shared: one ranking in flight and no queue, so of six calls at once the
    ones that find the slot taken are refused with Retry-After, and nothing leaks."""
    admission = AdmissionSettings(max_inflight=1, max_queue=0)
    async with gateway_client(settings(artifacts, admission=admission), triton.grpc_url) as client:
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        assert gw.rerank.gate is gw.search.gate
        answers = await asyncio.gather(*(rerank(client, query=f"{QUERY} {i}", documents=OUTSIDE) for i in range(6)))
        refused = [r for r in answers if r.status_code == 429]
        assert refused and all(r.status_code in (200, 429) for r in answers)
        assert all(r.json()["error"]["code"] == "overloaded" and int(r.headers["retry-after"]) >= 1 for r in refused)
        assert (gw.rerank.gate.inflight, gw.rerank.gate.queued) == (0, 0)
        metrics = (await client.get("/metrics")).text
    assert 'ranking_gateway_requests_total{route="/v1/rerank",status="429"}' in metrics


def _copy_with_manifest(
    artifacts: ArtifactPaths, tmp_path: Path, drop: tuple[str, ...] = (), **changes: object
) -> ArtifactPaths:
    """The build's index and tokenizers with its manifest changed (its models stay on the session's Triton)."""
    root = tmp_path / "copy"
    shutil.copytree(artifacts.root, root, ignore=shutil.ignore_patterns("model_repository", "onnx"))
    manifest = {**json.loads((root / "manifest.json").read_text()), **changes}
    (root / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k not in drop}))
    return ArtifactPaths(root)


@pytest.mark.anyio
async def test_a_build_without_a_reranker_answers_501(artifacts: ArtifactPaths, triton, tmp_path: Path) -> None:
    bare = _copy_with_manifest(artifacts, tmp_path, reranker=None)
    async with gateway_client(settings(bare, rerank_alpha=None), triton.grpc_url) as client:
        r = await rerank(client, query=QUERY, documents=OUTSIDE)
        invalid = await rerank(client, query=QUERY, documents=[])
    assert r.status_code == 501 and r.json()["error"]["code"] == "no_reranker"
    assert invalid.status_code == 422  # the body is checked first, whatever the build


# --- a late-interaction build --------------------------------------------------------------------


@pytest.mark.anyio
async def test_late_interaction_scores_corpus_texts_as_search_scores_them(
    late_artifacts: ArtifactPaths, late_triton
) -> None:
    """The documents' token vectors computed on Triton (`document_token_encoder`) are the store's,
    so a corpus document's text scores the MaxSim that search gets from the store."""
    texts = texts_by_id(late_artifacts)
    manifest = Manifest.read(late_artifacts.root)
    store = TokenStore.open(late_artifacts.root / manifest.token_store.path, documents=manifest.documents,
                            dim=manifest.token_store.dim)
    async with gateway_client(settings(late_artifacts), late_triton.grpc_url) as client:
        ready = (await client.get("/readyz")).json()
        assert ready["ready"] and ready["models"][DOCUMENT_TOKENS.name]
        searched = (await client.post("/v1/search", json={"query": QUERY, "k": 10, "candidates": 10})).json()
        assert searched["reranked"] and not searched["degraded"]
        ids = [r["id"] for r in searched["results"]][::-1]
        r = await rerank(client, query=QUERY, documents=[texts[i] for i in ids])
        assert r.status_code == 200
        results = r.json()["results"]
        by_id = {h["id"]: h["score"] for h in searched["results"]}
        np.testing.assert_allclose([h["relevance_score"] for h in results], [by_id[ids[h["index"]]] for h in results],
                                   atol=0.02)  # the store is int8, Triton's vectors fp32

        gw = client.app.state.gateway  # type: ignore[attr-defined]
        row = list(texts).index(ids[0])
        (vectors,) = await gw.models.encode_documents(gw.search.reranker.document_tokenizer.encode([texts[ids[0]]]))
        np.testing.assert_allclose(vectors, store.document(row), atol=6e-3)
        outside = await rerank(client, query=QUERY, documents=OUTSIDE, top_n=2)
    assert outside.status_code == 200 and len(outside.json()["results"]) == 2


@pytest.mark.anyio
async def test_a_late_build_from_before_the_document_model_answers_501(
    late_artifacts: ArtifactPaths, late_triton, tmp_path: Path
) -> None:
    older = _copy_with_manifest(late_artifacts, tmp_path, drop=("document_token_encoder",))  # as it was written
    async with gateway_client(settings(older), late_triton.grpc_url) as client:
        r = await rerank(client, query=QUERY, documents=OUTSIDE)
        ready = (await client.get("/readyz")).json()
        searched = await client.post("/v1/search", json={"query": QUERY, "k": 3, "candidates": 10})
    assert r.status_code == 501 and r.json()["error"]["code"] == "no_document_encoder"
    assert DOCUMENT_TOKENS.name not in ready["models"] and ready["ready"]  # it never waits for a model it lacks
    assert searched.status_code == 200 and searched.json()["reranked"]
