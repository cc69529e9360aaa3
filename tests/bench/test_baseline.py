"""The pure helpers of bench/baseline.py: summary figures, rank scores, flag parsing (no torch, no models)."""

from __future__ import annotations


import pytest
from tests.bench.bench_module import load_bench

bl = load_bench("baseline")


def test_summary_scores_a_failed_query_zero_and_times_only_answers() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": bl.rank_scores([("x", 9.0), ("a", 1.0)])}  # relevant at rank 2; q2 never answered
    s = bl.summarize(run, qrels, [10.0, 20.0, 30.0, 40.0, 50.0], wall_s=2.0)
    assert s["queries"] == 1
    assert s["mrr@10"] == pytest.approx(0.25)  # (1/2 + 0) / 2
    assert s["p50_ms"] == 30.0
    assert s["p99_ms"] == pytest.approx(49.6)  # numpy's linear interpolation
    assert s["qps"] == 2.5


def test_rank_scores_keep_the_returned_order() -> None:
    scores = bl.rank_scores([("z", -3.0), ("a", -1.0), ("m", -2.0)])
    assert sorted(scores, key=scores.get, reverse=True) == ["z", "a", "m"]


def test_parse_concurrency() -> None:
    assert bl.parse_concurrency("1,8") == [1, 8]
    with pytest.raises(ValueError):
        bl.parse_concurrency("0,4")
