"""`serving.search` pieces that need no Triton: what the profile re-ranks."""

from __future__ import annotations

from ranking_gateway.serving.search import Candidate, personalized_scope


def test_the_profile_reranks_the_reranked_head_only() -> None:
    # reranker logits (~4) and RRF sums (~0.03) z-scored together would make every reranked
    # candidate look like a clear winner: the scope stops where the reranker did
    head = [Candidate(row, 0.03, 4.0 - row / 10) for row in range(3)]
    tail = [Candidate(row, 0.02, None) for row in range(3, 8)]
    assert personalized_scope(head + tail) == 3


def test_without_a_reranker_every_candidate_is_in_scope() -> None:
    first_stage_only = [Candidate(row, 0.5 - row / 100, None) for row in range(6)]
    assert personalized_scope(first_stage_only) == 6
    assert personalized_scope([]) == 0
