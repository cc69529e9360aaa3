"""Fitting the personaliser's weights from the log: impressions joined with clicks.

Every impression line holds the features of the documents a search showed a user, under its
`request_id`; an example is one shown document, labelled 1 when an event of positive weight
(click, dwell, purchase) for that document came back under the same `request_id` and user.
The model is an L2-regularised logistic regression fitted by Newton's method (numpy only),
evaluated on requests held out by a hash of their id against the default weights.

Position bias: a shown document is clicked more the higher it was shown, whatever its features
(clicks were logged with the positions they were shown at: an impression's `doc_ids` are in the
order shown). With `train-personalizer --position-bias` the fit models
`logit P(click) = W^T f + b * log(position)`: the position term absorbs the examination bias, and
only `W` is kept for serving (where there is no position yet). Without it the bias leaks into the
features that correlate with position (`primary` above all).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ranking_gateway.personalization.events import DEFAULT_EVENT_WEIGHTS
from ranking_gateway.personalization.scorer import FEATURE_NAMES, sigmoid


@dataclass(frozen=True, slots=True)
class Dataset:
    features: np.ndarray  # float64 [n, n_features]
    labels: np.ndarray  # float64 [n], 0/1
    request_ids: list[str]  # per example
    positions: np.ndarray | None = None  # float64 [n], 1-based rank the example was shown at


def build_dataset(records: Iterable[dict[str, Any]]) -> Dataset:
    """Join impression lines with positive events by (request_id, user_id, doc_id)."""
    impressions: dict[str, dict[str, Any]] = {}
    positives: set[tuple[str, str, str]] = set()
    for record in records:
        kind = record.get("kind")
        if kind == "impression" and isinstance(record.get("request_id"), str):
            impressions[record["request_id"]] = record
        elif kind == "event" and record.get("request_id") and DEFAULT_EVENT_WEIGHTS.get(record.get("type"), 0) > 0:
            positives.add((record["request_id"], record.get("user_id"), record.get("doc_id")))
    feats: list[list[float]] = []
    labels: list[float] = []
    request_ids: list[str] = []
    positions: list[float] = []
    for request_id, imp in impressions.items():
        rows = imp.get("features") or []
        doc_ids = imp.get("doc_ids") or []
        for position, (doc_id, row) in enumerate(zip(doc_ids, rows), start=1):
            if len(row) != len(FEATURE_NAMES):
                continue  # logged by a gateway with another feature set
            feats.append([float(x) for x in row])
            labels.append(1.0 if (request_id, imp.get("user_id"), doc_id) in positives else 0.0)
            request_ids.append(request_id)
            positions.append(float(position))
    return Dataset(
        features=np.array(feats, dtype=np.float64).reshape(-1, len(FEATURE_NAMES)),
        labels=np.array(labels, dtype=np.float64),
        request_ids=request_ids,
        positions=np.array(positions, dtype=np.float64),
    )


def holdout_mask(request_ids: list[str], fraction: float) -> np.ndarray:
    """True for examples of held-out requests (all of a request's examples go the same way)."""
    cut = int(fraction * 2**32)
    return np.array([int.from_bytes(hashlib.sha1(r.encode()).digest()[:4], "big") < cut for r in request_ids])


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, iterations: int = 50) -> np.ndarray:
    """Newton/IRLS for sum log-loss + l2/2 * |w|^2 (the last column, the bias, unpenalised)."""
    n, d = x.shape
    w = np.zeros(d)
    penalty = np.full(d, l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = sigmoid(x @ w)
        grad = x.T @ (p - y) + penalty * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(d)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def fit_position_debiased(
    x: np.ndarray, y: np.ndarray, positions: np.ndarray, *, l2: float = 1.0, iterations: int = 50
) -> tuple[np.ndarray, float]:
    """(W, b): the logistic fit of `W^T f + b * log(position)`; W alone is what serving uses.
    The features' last column stays the (unpenalised) bias; b is penalised like the features."""
    xp = np.column_stack([x[:, :-1], np.log(np.asarray(positions, dtype=np.float64)), x[:, -1:]])
    w = fit_logistic(xp, y, l2=l2, iterations=iterations)
    return np.concatenate([w[:-2], w[-1:]]), float(w[-2])


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties averaged); None with one class only."""
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def evaluate(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> dict[str, float | None]:
    p = sigmoid(x @ weights)
    return {"log_loss": log_loss(y, p), "auc": auc(y, p)}
