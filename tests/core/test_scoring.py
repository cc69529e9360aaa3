import numpy as np

from ranking_gateway.core.scoring import interpolate, zscore


def test_zscore_standardises_and_handles_constant_lists() -> None:
    z = zscore([1.0, 2.0, 3.0])
    np.testing.assert_allclose(z, [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    assert zscore([5.0, 5.0]).tolist() == [0.0, 0.0] and zscore([7.0]).tolist() == [0.0]


def test_interpolate_moves_from_retrieval_to_reranker_order() -> None:
    retrieval, logits = [0.9, 0.5, 0.1], [-1.0, 0.0, 3.0]
    assert np.argsort(-interpolate(retrieval, logits, 1.0)).tolist() == [2, 1, 0]
    assert np.argsort(-interpolate(retrieval, logits, 0.0)).tolist() == [0, 1, 2]
    np.testing.assert_allclose(interpolate(retrieval, logits, 0.5), 0.5 * zscore(logits) + 0.5 * zscore(retrieval))
