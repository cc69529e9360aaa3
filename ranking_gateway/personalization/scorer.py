"""The personalised score: a logistic model sigma(W^T f(x)) over per-candidate features.

Features, in `FEATURE_NAMES` order, for each candidate of one search:

* `primary`: the reranker score (the retrieval score when reranking was off), z-scored against
  the *head* -- the candidates the reranker scored, or the first `z_head` when none were -- so
  that the weights do not depend on the reranker's scale and "a clear winner" means the same
  however many unreranked candidates follow (their primary is the first stage's score put on the
  reranker's scale by the caller, `core.scoring.onto_head_scale`);
* `retrieval`: the retrieval (inner-product) score, z-scored within the list;
* `profile_sim`: cosine between the user's profile centroid and the document's embedding;
* `recency`: sum over the user's recent interactions with this very document of
  sign(weight) * 2^(-age / recency_half_life), clipped to [-1, 1];
* `bias`: 1.

The ranking is by sigma(W^T f), except that a *protected head* keeps its place: the candidates
whose `primary` z-score is at least `protect_head_z` (the query's likely answers: with the
default 0.7, about six of the 30 reranked) lead, in their non-personalised order (their scores
lifted where needed so that scores never rise down the list); the profile re-ranks the rest, and
may bring in candidates from far below the reranked head. This is what lets the profile weigh
much more (it moves documents further) without burying the query's best matches: measured in
docs/personalization.md ("v5", on the served stack). `protect_head_z=None` turns it off
(sigma(W^T f) over all candidates).

Opt-in levers, off by default (measured in docs/personalization.md, "Query relevance held at zero":
neither moved the trade-off between personal gain and query relevance): `max_demotion` caps how
many places below its non-personalised place a candidate can end, and `profile_expansion` measures
`profile_sim` against the mean direction of the documents nearest to the profile centroid. The v4
levers (docs/personalization.md, "v4"; also off by default, none moved the trade-off either) work
per request from the features alone: `affinity_gate` scales the profile weight by how near the
non-personalised top `page` is to the profile (how much the query is about the user's interest),
`confidence_ref` by how tight the reranker's top `page` is, `profile_floor_quantile` makes the
profile term promote-only, `max_newcomers` limits how many candidates from below enter the top
`page`, and `keep_page_order` keeps the query's own top `page` in its order.

A search without a user, or for a user without a profile, never reaches this module: it keeps
exactly the non-personalised order and scores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ranking_gateway.core.scoring import zscore
from ranking_gateway.personalization.profiles import UserProfile

FEATURE_NAMES: tuple[str, ...] = ("primary", "retrieval", "profile_sim", "recency", "bias")
# One z-unit of reranker score is worth what 0.033 of cosine to the profile is (candidates'
# cosines to a profile differ by ~0.1-0.3: outside the protected head the profile decides), and
# the protected head (z >= 0.7 against the reranked head) keeps the query's likely answers on top
# whatever the profile says. Measured on simulated users over the served SciFact stack
# (docs/personalization.md, "v5"): after 3 clicks +0.117 of personal NDCG@10 for -0.0011 of query
# NDCG@10 (1,000 users; the 400 held out from choosing it: +0.119, -0.0002), where the v2 defaults
# (10, z >= 2 over the reranked head alone) lost 0.020 of it.
DEFAULT_WEIGHTS: tuple[float, ...] = (1.0, 0.25, 30.0, 0.5, 0.0)
LEGACY_WEIGHTS: tuple[float, ...] = (1.0, 0.25, 4.0, 0.5, 0.0)  # the defaults before v2, without a protected head
DEFAULT_PROTECT_HEAD_Z: float | None = 0.7
# where no reranker ran, the primary is z-scored against the first 50 candidates: the profile then
# moves less than behind a reranker, which has more evidence of what answers the query
# (docs/personalization.md, "v5": retrieval-only lists)
DEFAULT_Z_HEAD: int | None = 50
DEFAULT_RECENCY_HALF_LIFE_S = 3600.0
# opt-in levers (off by default; measured in docs/personalization.md, "Simulated users", none of them
# improved the gain/query-relevance trade-off there); a weights file may set them
OPTIONAL_SETTINGS: tuple[str, ...] = (
    "z_head", "profile_expansion", "expansion_steps", "max_demotion",
    "affinity_gate", "confidence_ref", "confidence_cap", "profile_floor_quantile", "max_newcomers",
    "keep_page_order", "page",
)


def candidate_features(
    profile: UserProfile | None,
    *,
    rows: np.ndarray,
    embeddings: np.ndarray,
    row_of: Mapping[str, int],
    primary: np.ndarray,
    retrieval: np.ndarray,
    now: float,
    recency_half_life_s: float = DEFAULT_RECENCY_HALF_LIFE_S,
    expansion: int = 0,
    expansion_steps: int = 1,
    head: int | None = None,
) -> np.ndarray:
    """float64 [len(rows), len(FEATURE_NAMES)] for the candidates at index `rows` of
    `embeddings` (all documents; `row_of` maps the profile's document ids to rows); `primary` is
    z-scored against its first `head` values (None: all). Without a profile the personal features
    are 0 (what impressions of profile-less users log)."""
    n = len(rows)
    feats = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float64)
    if n == 0:
        return feats
    feats[:, 0] = zscore(np.asarray(primary, dtype=np.float64), head)
    feats[:, 1] = zscore(np.asarray(retrieval, dtype=np.float64))
    feats[:, 4] = 1.0
    if profile is None:
        return feats
    centroid = profile_direction(profile, embeddings, expansion, expansion_steps)
    if centroid is not None:
        feats[:, 2] = np.asarray(embeddings[rows], dtype=np.float32) @ centroid
    if profile.recent:
        position = {int(row): i for i, row in enumerate(rows)}
        for item in profile.recent:
            i = position.get(row_of.get(item.doc_id, -1))
            if i is not None:
                age = max(0.0, now - item.ts)
                feats[i, 3] += np.sign(item.weight) * 2.0 ** (-age / recency_half_life_s)
        np.clip(feats[:, 3], -1.0, 1.0, out=feats[:, 3])
    return feats


def profile_direction(
    profile: UserProfile, embeddings: np.ndarray, expansion: int = 0, steps: int = 1
) -> np.ndarray | None:
    """The unit direction the `profile_sim` feature measures against: the profile's centroid, or
    with `expansion` > 0 the mean direction of the `expansion` documents nearest to it (`steps`
    times: a mean shift toward the dense region of the index the user's clicks lie in)."""
    centroid = profile.centroid()
    if centroid is None or expansion <= 0:
        return centroid
    m = min(int(expansion), len(embeddings))
    direction = centroid
    for _ in range(max(1, int(steps))):
        sims = np.asarray(embeddings @ direction, dtype=np.float32)
        nearest = np.argpartition(-sims, m - 1)[:m] if m < len(sims) else np.arange(len(sims))
        mean = np.asarray(embeddings[nearest], dtype=np.float64).sum(axis=0)
        norm = float(np.linalg.norm(mean))
        if not np.isfinite(norm) or norm < 1e-12:
            return centroid
        direction = (mean / norm).astype(np.float32)
    return direction


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


@dataclass(slots=True)
class PersonalScorer:
    weights: np.ndarray = field(default_factory=lambda: np.array(DEFAULT_WEIGHTS, dtype=np.float64))
    recency_half_life_s: float = DEFAULT_RECENCY_HALF_LIFE_S
    # candidates with a primary z-score >= this lead in their incoming order; None: no protected head
    protect_head_z: float | None = DEFAULT_PROTECT_HEAD_Z
    # where no reranker ran, the primary feature is z-scored against the first N candidates
    # (None: all of them, what v2 and before did)
    z_head: int | None = DEFAULT_Z_HEAD
    # profile_sim against the mean of the N documents nearest to the profile centroid (0: the centroid)
    profile_expansion: int = 0
    expansion_steps: int = 1
    # no candidate ends more than this many places below its non-personalised place (None: no cap)
    max_demotion: int | None = None
    # v4 levers (docs/personalization.md, "v4"), all off by default. Each scales or reshapes the
    # profile term per request, from the features alone (rows in the non-personalised order):
    # query-profile affinity gate (lo, hi): the profile weight is multiplied by
    # clip((a - lo) / (hi - lo), 0, 1), a = mean profile_sim of the non-personalised top `page`
    # (= cosine(profile, the mean embedding of that top): how much the query is about the user's interest)
    affinity_gate: tuple[float, float] | None = None
    # reranker-confidence scaling: the profile weight is multiplied by min(confidence_cap,
    # confidence_ref / spread), spread = best primary z-score minus the `page`-th best
    # (a tight head: the reranker is unsure, the profile may decide more; a spread-out one: less)
    confidence_ref: float | None = None
    confidence_cap: float = 2.0
    # promote-only profile term: profile_sim minus its q-quantile in the list, floored at 0, so
    # only the candidates clearly nearer the profile than the list move (None: the plain cosine)
    profile_floor_quantile: float | None = None
    # at most this many candidates from outside the non-personalised top `page` enter the
    # personalised top `page` (the best-scored ones); the profile re-orders the page freely.
    # None: no limit
    max_newcomers: int | None = None
    # the documents of the non-personalised top `page` keep their order among themselves: the
    # profile decides which candidates from below enter the page and where, not how the query's own
    # results are ordered (those the newcomers push off the page are then the lowest-ranked ones)
    keep_page_order: bool = False
    # the top the user sees (the gates read it, `max_newcomers` guards it)
    page: int = 10

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        if self.weights.shape != (len(FEATURE_NAMES),) or not np.all(np.isfinite(self.weights)):
            raise ValueError(f"personaliser weights must be {len(FEATURE_NAMES)} finite numbers")
        if self.protect_head_z is not None and not np.isfinite(self.protect_head_z):
            raise ValueError("protect_head_z must be a finite number or None")
        if self.profile_expansion < 0 or self.expansion_steps < 1:
            raise ValueError("profile_expansion must be >= 0 and expansion_steps >= 1")
        if self.max_demotion is not None and self.max_demotion < 0:
            raise ValueError("max_demotion must be >= 0 or None")
        if self.affinity_gate is not None:
            lo, hi = (float(x) for x in self.affinity_gate)
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise ValueError("affinity_gate must be (lo, hi) with finite lo < hi, or None")
            self.affinity_gate = (lo, hi)
        if self.confidence_ref is not None and not (np.isfinite(self.confidence_ref) and self.confidence_ref > 0):
            raise ValueError("confidence_ref must be a positive number or None")
        if not (np.isfinite(self.confidence_cap) and self.confidence_cap > 0):
            raise ValueError("confidence_cap must be a positive number")
        if self.profile_floor_quantile is not None and not 0.0 <= self.profile_floor_quantile <= 1.0:
            raise ValueError("profile_floor_quantile must be in [0, 1] or None")
        if self.max_newcomers is not None and self.max_newcomers < 0:
            raise ValueError("max_newcomers must be >= 0 or None")
        if self.page < 2:
            raise ValueError("page must be >= 2")
        if self.z_head is not None and self.z_head < 2:
            raise ValueError("z_head must be >= 2 or None")

    def profile_scale(self, features: np.ndarray) -> float:
        """The factor the v4 gates put on the profile weight for this candidate list (1.0 when
        both are off). `features` rows are in the non-personalised order."""
        scale = 1.0
        n = len(features)
        if n == 0:
            return scale
        top = min(self.page, n)
        if self.affinity_gate is not None:
            lo, hi = self.affinity_gate
            affinity = float(features[:top, 2].mean())
            scale *= float(np.clip((affinity - lo) / (hi - lo), 0.0, 1.0))
        if self.confidence_ref is not None and n >= 2:
            z = np.sort(features[:, 0])[::-1]
            spread = float(z[0] - z[top - 1])
            scale *= min(self.confidence_cap, self.confidence_ref / max(spread, 1e-9))
        return scale

    def personal_features(self, features: np.ndarray) -> np.ndarray:
        """`features` with the profile term as the scorer ranks by: the promote-only floor and the
        gates applied (the input itself when all v4 levers are off)."""
        if self.affinity_gate is None and self.confidence_ref is None and self.profile_floor_quantile is None:
            return features
        f = np.array(features, dtype=np.float64, copy=True)
        if len(f) == 0:
            return f
        scale = self.profile_scale(features)
        if self.profile_floor_quantile is not None:
            floor = float(np.quantile(f[:, 2], self.profile_floor_quantile))
            f[:, 2] = np.maximum(f[:, 2] - floor, 0.0)
        f[:, 2] *= scale
        return f

    def score(self, features: np.ndarray) -> np.ndarray:
        return sigmoid(features @ self.weights)

    def rank(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(order, scores): candidate indices, best first, and every candidate's score. `features`
        rows are in the non-personalised order. The protected head (primary z-score >=
        `protect_head_z`) comes first in that order, then the others by descending personalised
        score (ties keep the incoming order). A protected candidate's score is lifted to the
        best score after it where it is lower, so that scores never rise down the list (what a
        search client expects); the others keep sigma(W^T f). With `max_demotion` N, a candidate
        that would end more than N places below its incoming place is put at that place. The v4
        levers (`personal_features`) reshape the profile term first."""
        scores = self.score(self.personal_features(features))
        order = np.argsort(-scores, kind="stable")
        protected = (features[:, 0] >= self.protect_head_z if self.protect_head_z is not None
                     else np.zeros(len(order), dtype=bool))
        if (not protected.any() and self.max_demotion is None and self.max_newcomers is None
                and not self.keep_page_order):
            return order, scores
        order = np.concatenate([np.flatnonzero(protected), order[~protected[order]]])
        if self.max_demotion is not None:
            order = _cap_demotion(order, int(self.max_demotion))
        if self.max_newcomers is not None:
            order = _limit_newcomers(order, self.page, int(self.max_newcomers))
        if self.keep_page_order:
            incumbent = order < self.page
            order = order.copy()
            order[incumbent] = np.sort(order[incumbent])
        shown = scores.copy()
        shown[order] = np.maximum.accumulate(scores[order][::-1])[::-1]
        return order, shown

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "features": list(FEATURE_NAMES),
            "weights": {n: float(w) for n, w in zip(FEATURE_NAMES, self.weights)},
            "recency_half_life_s": self.recency_half_life_s,
        }
        # the opt-in levers only when set, so that a file means the same to a gateway without them
        defaults = {f.name: f.default for f in fields(self)}
        for name in OPTIONAL_SETTINGS:
            if getattr(self, name) != defaults[name]:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_json(cls, obj: dict) -> PersonalScorer:
        weights = obj.get("weights")
        if not isinstance(weights, dict) or set(weights) != set(FEATURE_NAMES):
            raise ValueError(f"'weights' must map exactly the features {', '.join(FEATURE_NAMES)}")
        return cls(
            weights=np.array([float(weights[n]) for n in FEATURE_NAMES]),
            recency_half_life_s=float(obj.get("recency_half_life_s", DEFAULT_RECENCY_HALF_LIFE_S)),
            profile_expansion=int(obj.get("profile_expansion", 0)),
            expansion_steps=int(obj.get("expansion_steps", 1)),
            max_demotion=None if obj.get("max_demotion") is None else int(obj["max_demotion"]),
            affinity_gate=None if obj.get("affinity_gate") is None else tuple(float(x) for x in obj["affinity_gate"]),
            confidence_ref=None if obj.get("confidence_ref") is None else float(obj["confidence_ref"]),
            confidence_cap=float(obj.get("confidence_cap", 2.0)),
            profile_floor_quantile=(None if obj.get("profile_floor_quantile") is None
                                    else float(obj["profile_floor_quantile"])),
            max_newcomers=None if obj.get("max_newcomers") is None else int(obj["max_newcomers"]),
            keep_page_order=bool(obj.get("keep_page_order", False)),
            page=int(obj.get("page", 10)),
            z_head=DEFAULT_Z_HEAD if "z_head" not in obj else None if obj["z_head"] is None else int(obj["z_head"]),
        )

    @classmethod
    def load(cls, path: str | Path) -> PersonalScorer:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def _limit_newcomers(order: np.ndarray, page: int, limit: int) -> np.ndarray:
    """`order` with at most `limit` candidates from outside the non-personalised top `page`
    (index >= page) in its first `page` places: the first `limit` such of `order` may enter, the
    page is then the first `page` of `order` among those and the non-personalised top `page`;
    everything keeps its relative order in `order`."""
    allowed = np.asarray(order) < page
    allowed[np.flatnonzero(~allowed)[:limit]] = True
    head = order[allowed][:page]
    rest = np.ones(len(order), dtype=bool)
    rest[np.isin(order, head)] = False
    return np.concatenate([head, order[rest]])


def _cap_demotion(order: np.ndarray, cap: int) -> np.ndarray:
    """`order` changed as little as possible so that no candidate i (its non-personalised place)
    ends below place i + cap: each place takes the next of `order`, unless a candidate is due."""
    n = len(order)
    placed = np.zeros(n, dtype=bool)
    out = np.empty(n, dtype=np.int64)
    nxt, due = 0, 0  # next of `order` to consider; smallest non-personalised place not yet placed
    for p in range(n):
        while due < n and placed[due]:
            due += 1
        if due < n and due + cap <= p:
            i = due
        else:
            while placed[order[nxt]]:
                nxt += 1
            i = int(order[nxt])
        placed[i] = True
        out[p] = i
    return out
