import numpy as np

from ranking_gateway.core.scoring import interpolate, onto_head_scale, zscore


def test_zscore_standardises_and_handles_constant_lists() -> None:
    z = zscore([1.0, 2.0, 3.0])
    np.testing.assert_allclose(z, [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    assert zscore([5.0, 5.0]).tolist() == [0.0, 0.0] and zscore([7.0]).tolist() == [0.0]


def test_interpolate_moves_from_retrieval_to_reranker_order() -> None:
    retrieval, logits = [0.9, 0.5, 0.1], [-1.0, 0.0, 3.0]
    assert np.argsort(-interpolate(retrieval, logits, 1.0)).tolist() == [2, 1, 0]
    assert np.argsort(-interpolate(retrieval, logits, 0.0)).tolist() == [0, 1, 2]
    np.testing.assert_allclose(interpolate(retrieval, logits, 0.5), 0.5 * zscore(logits) + 0.5 * zscore(retrieval))


def test_zscore_against_a_reference_head_uses_its_mean_and_spread() -> None:
    z = zscore([3.0, 2.0, 1.0, -10.0], reference=3)
    np.testing.assert_allclose(z[:3], zscore([3.0, 2.0, 1.0]))
    assert z[3] < -10  # the tail, far below the head, on the head's scale
    assert zscore([1.0, 1.0, 5.0], reference=2).tolist() == [0.0, 0.0, 0.0]  # a constant head: no scale


def test_onto_head_scale_fits_the_head_and_never_lifts_the_tail_above_it() -> None:
    head_retrieval = np.array([0.9, 0.8, 0.7])
    head_scores = 10 * head_retrieval + 1  # an exact line
    np.testing.assert_allclose(onto_head_scale(head_scores, head_retrieval, [0.6, 0.5]), [7.0, 6.0])
    assert onto_head_scale(head_scores, head_retrieval, [0.95]).tolist() == [8.0]  # capped at the head's lowest
    # a head where retrieval and reranker disagree: no slope, the head's mean, capped
    flat = onto_head_scale([1.0, 2.0, 3.0], [0.9, 0.8, 0.7], [0.1, 0.6])
    assert flat.tolist() == [1.0, 1.0]
    assert onto_head_scale([], [], [0.1]).tolist() == [0.0] and onto_head_scale([1.0], [0.5], []).size == 0
