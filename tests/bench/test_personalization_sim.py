"""bench/personalization_sim.py's pure parts: which queries a simulated user is evaluated and
clicks on, and the served-ranking cache."""

from argparse import Namespace

import numpy as np

from tests.bench.bench_module import load_bench

sim = load_bench("personalization_sim")


def _lists(queries: int, candidates: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Two clusters; every query's candidates hold both, cluster 1 outside the top 10."""
    labels = np.array([0] * 100 + [1] * 100)
    lists = np.tile(np.concatenate([np.arange(0, 90), np.arange(100, 110)]), (queries, 1))[:, :candidates]
    return labels, lists


def test_held_out_queries_come_from_the_eval_pool_and_clicks_from_the_rest():
    labels, lists = _lists(60)
    args = Namespace(users=20, eval_queries=5, click_queries=10, min_share=0.05)
    pool = np.zeros(60, dtype=bool)
    pool[:12] = True
    users = sim.pick_users(args, labels, lists, np.random.default_rng(0), pool)
    assert len(users) == 20
    for user in users:
        assert len(user.eval_queries) == 5 and all(pool[q] for q in user.eval_queries)
        assert len(user.click_queries) == 10 and not any(pool[q] for q in user.click_queries)


def test_without_an_eval_pool_held_out_and_clicked_queries_are_disjoint():
    labels, lists = _lists(30)
    args = Namespace(users=5, eval_queries=5, click_queries=10, min_share=0.05)
    for user in sim.pick_users(args, labels, lists, np.random.default_rng(1)):
        assert not set(user.eval_queries) & set(user.click_queries) and len(user.eval_queries) == 5


def test_no_user_when_the_pool_is_too_small():
    labels, lists = _lists(30)
    args = Namespace(users=3, eval_queries=5, click_queries=10, min_share=0.05)
    pool = np.zeros(30, dtype=bool)
    pool[:4] = True  # four held-out queries, five needed
    assert sim.pick_users(args, labels, lists, np.random.default_rng(0), pool) == []


def test_served_rankings_are_read_back_from_the_cache_without_a_gateway(tmp_path):
    cache = tmp_path / "rankings.npz"
    rows = np.array([[2, 0, 1]])
    np.savez(cache, rows=rows, scores=np.array([[9.0, 8.0, 0.3]]), retrieval=np.array([[0.2, 0.5, 0.3]]))
    got_rows, scores, retrieval = sim.served_rankings("http://127.0.0.1:9", ["q"], ["a", "b", "c"], 3, cache)
    assert got_rows.tolist() == [[2, 0, 1]] and scores[0, 0] == 9.0 and retrieval[0, 1] == 0.5


def test_head_recall_counts_what_a_protected_head_covers():
    # one query: a clear winner (relevant), then a relevant document with an ordinary score
    scores = np.array([[10.0, 5.0, 4.0, 3.0, 2.0, 0.01, 0.01]])
    relevant = np.array([[True, False, False, True, False, True, False]])
    strict, loose = sim.head_recall(scores, relevant, depth=5, thresholds=[1.5, -0.7], page=4)
    assert strict["protected_per_query"] == 1 and strict["relevant_in_head_protected"] == 0.5
    assert (strict["page_relevant_outside"], strict["page_relevant"]) == (1, 2)  # the tail's is not counted
    assert loose["protected_per_query"] == 4 and loose["relevant_in_head_protected"] == 1.0
    assert loose["page_relevant_outside"] == 0
