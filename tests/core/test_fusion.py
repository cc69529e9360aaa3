import pytest

from ranking_gateway.core.fusion import rrf


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = dict(rrf([["a", "b", "c"], ["c", "d"]], k=60))
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61) and fused["d"] == pytest.approx(1 / 62)
    assert [item for item, _ in rrf([["a", "b", "c"], ["c", "d"]])] == ["c", "a", "b", "d"]


def test_ties_keep_first_appearance_and_limit_cuts() -> None:
    # a (dense #1) and x (BM25 #1) tie at 1/61: the earlier list's item stays first
    assert [item for item, _ in rrf([["a", "b"], ["x", "y"]])] == ["a", "x", "b", "y"]
    assert [item for item, _ in rrf([["a", "b"], ["x", "y"]], limit=3)] == ["a", "x", "b"]
    assert rrf([[], []]) == [] and rrf([[1, 2]], k=0) == [(1, 1.0), (2, 0.5)]


def test_negative_k_is_rejected() -> None:
    with pytest.raises(ValueError):
        rrf([["a"]], k=-1)
