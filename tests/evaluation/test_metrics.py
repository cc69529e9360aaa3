"""The metric functions must agree with trec_eval (pytrec_eval) on random runs, ties included."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ranking_gateway.evaluation import metrics

pytrec_eval = pytest.importorskip("pytrec_eval")


def _random_case(seed: int) -> tuple[dict, dict]:
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(300)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(40):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 8))
        qrels[qid] = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
        retrieved = rng.sample(docs, rng.randint(5, 150))
        # coarse scores make ties frequent, so the tie-break convention is exercised
        run[qid] = {d: float(rng.randint(0, 30)) / 3.0 for d in retrieved}
    run["q0"] = {}  # a query with nothing retrieved
    return qrels, run


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_agree_with_pytrec_eval(seed: int) -> None:
    qrels, run = _random_case(seed)
    ours = metrics.per_query(run, qrels)
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recip_rank", "recall.100"})
    theirs = evaluator.evaluate({q: r for q, r in run.items() if r})
    # trec_eval's recip_rank has no cut-off; compute MRR@10 from it by dropping ranks > 10
    checked = 0
    for qid, row in ours.items():
        ref = theirs.get(qid, {"ndcg_cut_10": 0.0, "recip_rank": 0.0, "recall_100": 0.0})
        assert row["ndcg@10"] == pytest.approx(ref["ndcg_cut_10"], abs=1e-9), qid
        assert row["recall@100"] == pytest.approx(ref["recall_100"], abs=1e-9), qid
        expected_mrr = ref["recip_rank"] if ref["recip_rank"] >= 0.1 else 0.0
        assert row["mrr@10"] == pytest.approx(expected_mrr, abs=1e-9), qid
        checked += 1
    assert checked >= 35


def test_perfect_and_empty_rankings() -> None:
    judged = {"a": 1, "b": 2}
    assert metrics.ndcg_at_k(["b", "a", "c"], judged) == pytest.approx(1.0)
    assert metrics.ndcg_at_k(["c"], judged) == 0.0
    assert metrics.mrr_at_k(["c", "a"], judged) == 0.5
    assert metrics.recall_at_k(["a"], judged) == 0.5


def test_percentile_matches_numpy() -> None:
    values = [random.Random(3).random() * 100 for _ in range(101)]
    for q in (50, 95, 99):
        assert metrics.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
