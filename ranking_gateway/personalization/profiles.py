"""User profiles: a time-decayed centroid of the embeddings of the documents a user interacted
with, plus counts and the most recent items; the update rule and the interface of the stores
(`memory_store.InMemoryProfileStore`, `redis_store.RedisProfileStore`).

The profile keeps `vector = sum_i w_i * 2^(-(t_ref - t_i) / half_life) * e_i` as of `t_ref`
(skips have negative `w_i`, so they push the centroid away from what was skipped). A new event
at `t >= t_ref` decays the sum to `t` and adds its term; a late event (`t < t_ref`) adds its term
already decayed, so the result does not depend on the order events arrive in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ranking_gateway.core.config import PersonalizationSettings
from ranking_gateway.core.errors import BackendUnavailable


class ProfileStoreUnavailable(BackendUnavailable):
    """The profile store (Redis) cannot answer: events get a 503, searches the non-personalised
    ranking marked degraded."""


@dataclass(frozen=True, slots=True)
class RecentItem:
    doc_id: str
    type: str
    weight: float
    ts: float


@dataclass(slots=True)
class UserProfile:
    user_id: str
    vector: np.ndarray  # float64 [dim], the decayed weighted sum as of t_ref
    t_ref: float
    mass: float = 0.0  # decayed sum of |w|, as of t_ref
    counts: dict[str, int] = field(default_factory=dict)
    recent: list[RecentItem] = field(default_factory=list)  # newest first

    def decay_factor(self, now: float, half_life_s: float) -> float:
        return 2.0 ** (-max(0.0, now - self.t_ref) / half_life_s)

    def centroid(self) -> np.ndarray | None:
        """The unit-length direction of the profile (float32), or None when it has none."""
        norm = float(np.linalg.norm(self.vector))
        if not math.isfinite(norm) or norm < 1e-12:
            return None
        return (self.vector / norm).astype(np.float32)

    def to_json(self, now: float, half_life_s: float) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "events": dict(self.counts),
            "strength": self.mass * self.decay_factor(now, half_life_s),
            "centroid_norm": float(np.linalg.norm(self.vector)) * self.decay_factor(now, half_life_s),
            "half_life_s": half_life_s,
            "recent": [
                {"doc_id": r.doc_id, "type": r.type, "weight": r.weight, "ts": r.ts} for r in self.recent
            ],
            "updated_at": self.t_ref,
        }


def apply_event(
    profile: UserProfile | None,
    *,
    user_id: str,
    doc_id: str,
    type: str,
    weight: float,
    ts: float,
    embedding: np.ndarray,
    half_life_s: float,
    max_recent: int = PersonalizationSettings.max_recent,
) -> UserProfile:
    """The profile after one more event (a new object; `profile` is not modified)."""
    term = np.asarray(embedding, dtype=np.float64) * weight
    if profile is None:
        profile = UserProfile(user_id=user_id, vector=np.zeros_like(term), t_ref=ts)
    if profile.vector.shape != term.shape:
        raise ValueError(f"embedding dim {term.shape} does not match the profile's {profile.vector.shape}")
    if ts >= profile.t_ref:
        keep = 2.0 ** (-(ts - profile.t_ref) / half_life_s)
        vector, mass, t_ref = profile.vector * keep + term, profile.mass * keep + abs(weight), ts
    else:
        late = 2.0 ** (-(profile.t_ref - ts) / half_life_s)
        vector, mass, t_ref = profile.vector + term * late, profile.mass + abs(weight) * late, profile.t_ref
    counts = dict(profile.counts)
    counts[type] = counts.get(type, 0) + 1
    recent = sorted([RecentItem(doc_id, type, weight, ts), *profile.recent], key=lambda r: -r.ts)[:max_recent]
    return UserProfile(user_id=user_id, vector=vector, t_ref=t_ref, mass=mass, counts=counts, recent=recent)


class ProfileStore(Protocol):
    half_life_s: float
    # True: profiles outlive the process (Redis); False: they start empty and are rebuilt from the log
    persistent: bool

    async def get(self, user_id: str) -> UserProfile | None: ...
    async def update(
        self, user_id: str, *, doc_id: str, type: str, weight: float, ts: float, embedding: np.ndarray
    ) -> UserProfile: ...
    async def delete(self, user_id: str) -> bool: ...
    async def close(self) -> None: ...
