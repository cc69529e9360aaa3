"""`ranking-gateway eval-offline`: a registered subcommand measuring the served first stage in-process."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ranking_gateway.cli import main
from ranking_gateway.core.collection import write_collection
from ranking_gateway.core.corpus import Document
from ranking_gateway.evaluation.offline import rerank_run

DOCS = {
    "a": "Statins lower LDL cholesterol in adults.",
    "b": "Statins and muscle pain: a cohort study of statins.",
    "c": "Vitamin D does not prevent fractures in the elderly.",
    "d": "Sleep loss impairs memory consolidation.",
}
QUERIES = {"q1": "statins muscle pain", "q2": "cholesterol statins", "q3": "vitamin d fractures", "q4": "memory"}
QRELS = {"q1": {"a": 1}, "q2": {"a": 1, "b": 1}, "q3": {"d": 1}, "q4": {"d": 2}}


def test_eval_offline_reports_the_bm25_first_stage(tmp_path: Path) -> None:
    write_collection(tmp_path / "c", [Document(k, "", v) for k, v in DOCS.items()], QUERIES, {"test": QRELS})
    out = tmp_path / "offline.json"
    assert main(["eval-offline", "--collection", str(tmp_path / "c"), "--first-stage", "bm25", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    # by hand: q1 -> [b, a] (b shares all three terms), a second; q2 -> both relevant on top;
    # q3 -> [c], d not retrieved; q4 -> [d]
    expected_ndcg = (1 / math.log2(3) + 1 + 0 + 1) / 4
    assert report["queries"] == 4 and math.isclose(report["first_stage"]["bm25"]["retrieval"]["ndcg@10"], expected_ndcg)
    assert math.isclose(report["first_stage"]["bm25"]["retrieval"]["recall@100"], 3 / 4)
    assert main(["eval-offline", "--collection", str(tmp_path / "c"), "--first-stage", "bm25,sparse"]) == 2


def test_rerank_run_puts_the_blended_head_above_the_tail() -> None:
    cands = [("x", 3.0), ("y", 2.0), ("z", 1.0)]
    scores = rerank_run(cands, [0.0, 5.0], alpha=1.0)  # the reranker prefers y; z stays below the head
    assert sorted(scores, key=scores.get, reverse=True) == ["y", "x", "z"]
