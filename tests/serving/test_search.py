"""`serving.search` pieces that need no Triton: what the profile re-ranks."""

from __future__ import annotations

import numpy as np

from ranking_gateway.personalization.scorer import candidate_features
from ranking_gateway.serving.search import Candidate, personalization_inputs


def test_every_candidate_goes_to_the_profile_with_the_tail_below_the_reranked_head() -> None:
    # reranker scores (~4) and RRF sums (~0.03) are on unrelated scales: the tail's primary is put
    # on the reranker's (fitted on the head) and never above the head's lowest score
    head = [Candidate(row, 0.05 - row / 100, 4.0 - row / 2) for row in range(3)]
    tail = [Candidate(row, 0.02 - row / 1000, None) for row in range(3, 8)]
    inputs = personalization_inputs(head + tail)
    assert inputs.head == 3 and inputs.rows.tolist() == list(range(8))
    assert inputs.primary[:3].tolist() == [4.0, 3.5, 3.0]
    assert np.all(inputs.primary[3:] <= 3.0) and np.all(np.diff(inputs.primary[3:]) < 0)
    assert inputs.retrieval.tolist() == [c.retrieval_score for c in head + tail]


def test_the_reranker_winner_keeps_its_z_score_however_long_the_tail() -> None:
    head = [Candidate(row, 0.05 - row / 100, s) for row, s in enumerate([9.0, 5.0, 4.8, 4.6])]
    short, long = personalization_inputs(head), personalization_inputs(
        head + [Candidate(row, 0.01, None) for row in range(4, 100)])
    z = [candidate_features(None, rows=i.rows, embeddings=np.zeros((100, 2), np.float32), row_of={},
                            primary=i.primary, retrieval=i.retrieval, now=0.0, head=i.head)[0, 0]
         for i in (short, long)]
    assert z[0] == z[1] > 1.5


def test_without_a_reranker_the_first_stage_scores_are_the_primary() -> None:
    first_stage_only = [Candidate(row, 0.5 - row / 100, None) for row in range(6)]
    inputs = personalization_inputs(first_stage_only)
    assert inputs.head is None and inputs.primary.tolist() == inputs.retrieval.tolist()
    assert personalization_inputs([]).rows.tolist() == []
