"""Putting scores of different scales on one scale, per query.

Reranker logits and retrieval cosines live on unrelated scales; z-scoring both within one
query's candidates makes them comparable without a calibration set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def zscore(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """(x - mean) / std within the list; all zeros when the list is constant (or has one item)."""
    x = np.asarray(values, dtype=np.float64)
    std = float(x.std()) if len(x) else 0.0
    return (x - x.mean()) / std if std > 1e-9 else np.zeros_like(x)


def interpolate(retrieval: Sequence[float], logits: Sequence[float], alpha: float) -> np.ndarray:
    """alpha * z(reranker logit) + (1 - alpha) * z(retrieval score); alpha = 1 is the reranker alone."""
    return alpha * zscore(logits) + (1 - alpha) * zscore(retrieval)
