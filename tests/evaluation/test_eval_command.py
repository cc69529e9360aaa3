"""The eval plumbing end to end against an in-process stand-in gateway speaking the real HTTP contract."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from ranking_gateway.core.corpus import Document
from ranking_gateway.core.collection import write_collection
from ranking_gateway.evaluation.client import run_mode
from ranking_gateway.evaluation.report import lift, plot, summarize

QRELS = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}}


def gateway(request: httpx.Request) -> httpx.Response:
    """Ranks the relevant doc first with reranking, third without; q3 fails with rerank off."""
    body = json.loads(request.content)
    qid = body["query"].split()[0]
    rel = next(iter(QRELS[qid]))
    if qid == "q3" and not body["rerank"]:
        return httpx.Response(503, json={"error": {"code": "unavailable", "message": "x"}})
    others = [f"x{i}" for i in range(body["k"] - 1)]
    ids = [rel, *others] if body["rerank"] else [*others[:2], rel, *others[2:]]
    results = [{"id": d, "score": 1.0, "retrieval_score": 1.0, "title": "", "snippet": ""} for d in ids]
    timings = {"encode": 1.0, "retrieve": 0.5, "rerank": 5.0 if body["rerank"] else 0.0, "total": 7.0}
    return httpx.Response(200, json={"request_id": "r", "results": results, "cached": False, "degraded": False, "timings_ms": timings})


def run(rerank: bool):
    queries = {q: f"{q} text" for q in QRELS}
    return asyncio.run(run_mode("http://gw", queries, rerank=rerank, k=10, candidates=10, concurrency=2,
                                timeout_s=5, transport=httpx.MockTransport(gateway)))


def test_summaries_metrics_lift_and_plot(tmp_path: Path) -> None:
    off, on = run(False), run(True)
    assert set(off.errors) == {"q3"} and not on.errors
    s_off, s_on = summarize(off, QRELS), summarize(on, QRELS)
    # a failed query counts as zero, it does not silently vanish from the mean
    assert s_off["metrics"]["mrr@10"] == pytest.approx((1 / 3 + 1 / 3 + 0) / 3, abs=1e-4)
    assert s_on["metrics"]["ndcg@10"] == 1.0
    assert s_on["latency_ms"]["server_rerank"]["p50"] == 5.0
    assert lift([s_off, s_on])["ndcg@10"] == pytest.approx(1.0 - 2 * 0.5 / 3, abs=1e-3)
    png = tmp_path / "eval.png"
    plot([s_off, s_on], [off, on], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_split_uses_only_judged_queries(tmp_path: Path) -> None:
    from ranking_gateway.evaluation.command import parse_modes, read_split

    write_collection(tmp_path, [Document("a", "", "t")], {"q1": "one", "q9": "unjudged"}, {"test": {"q1": {"a": 1}}})
    queries, qrels = read_split(tmp_path, "test")
    assert queries == {"q1": "one"} and qrels == {"q1": {"a": 1}}
    assert parse_modes("off,on") == [False, True]
