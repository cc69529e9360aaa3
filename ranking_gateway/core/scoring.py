"""Putting scores of different scales on one scale, per query.

Reranker logits and retrieval cosines live on unrelated scales; z-scoring both within one
query's candidates makes them comparable without a calibration set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def zscore(values: Sequence[float] | np.ndarray, reference: int | None = None) -> np.ndarray:
    """(x - mean) / std within the list; all zeros when the list is constant (or has one item).
    `reference` N: the mean and std are the first N values' (the reranked head), applied to all."""
    x = np.asarray(values, dtype=np.float64)
    ref = x if reference is None else x[: max(0, reference)]
    std = float(ref.std()) if len(ref) else 0.0
    return (x - ref.mean()) / std if std > 1e-9 else np.zeros_like(x)


def interpolate(retrieval: Sequence[float], logits: Sequence[float], alpha: float) -> np.ndarray:
    """alpha * z(reranker logit) + (1 - alpha) * z(retrieval score); alpha = 1 is the reranker alone."""
    return alpha * zscore(logits) + (1 - alpha) * zscore(retrieval)


def onto_head_scale(
    head_scores: Sequence[float] | np.ndarray,
    head_retrieval: Sequence[float] | np.ndarray,
    tail_retrieval: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Scores for candidates the reranker did not see, on its scale: the least-squares line from
    retrieval score to reranker score over the reranked head (slope ≥ 0), applied to the tail's
    retrieval scores and capped at the head's lowest score, since the stack ranked the tail below
    it. So one list can be z-scored whole (the personaliser's `primary`) without the two scales
    making every reranked candidate look like a clear winner."""
    y = np.asarray(head_scores, dtype=np.float64)
    x = np.asarray(head_retrieval, dtype=np.float64)
    tail = np.asarray(tail_retrieval, dtype=np.float64)
    if not len(y) or not len(tail):
        return np.zeros_like(tail)
    spread = float(x.var())
    slope = max(0.0, float(((x - x.mean()) * (y - y.mean())).mean()) / spread) if spread > 1e-18 else 0.0
    return np.minimum(y.mean() + slope * (tail - x.mean()), y.min())
