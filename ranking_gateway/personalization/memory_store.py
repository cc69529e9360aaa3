"""Profiles of one gateway process, in a dict: rebuilt from the JSONL log at start-up."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ranking_gateway.core.config import PersonalizationSettings
from ranking_gateway.personalization.profiles import UserProfile, apply_event


class InMemoryProfileStore:
    """Least recently updated profiles are evicted past `max_users`. Each update runs without an
    `await` between read and write, so it is atomic under asyncio."""

    persistent = False

    def __init__(
        self,
        *,
        half_life_s: float = PersonalizationSettings.half_life_s,
        max_recent: int = PersonalizationSettings.max_recent,
        max_users: int = 1_000_000,
    ) -> None:
        self.half_life_s = half_life_s
        self.max_recent = max_recent
        self.max_users = max_users
        self._profiles: OrderedDict[str, UserProfile] = OrderedDict()

    def __len__(self) -> int:
        return len(self._profiles)

    async def get(self, user_id: str) -> UserProfile | None:
        return self._profiles.get(user_id)

    async def update(
        self, user_id: str, *, doc_id: str, type: str, weight: float, ts: float, embedding: np.ndarray
    ) -> UserProfile:
        profile = apply_event(
            self._profiles.get(user_id),
            user_id=user_id,
            doc_id=doc_id,
            type=type,
            weight=weight,
            ts=ts,
            embedding=embedding,
            half_life_s=self.half_life_s,
            max_recent=self.max_recent,
        )
        self._profiles[user_id] = profile
        self._profiles.move_to_end(user_id)
        while len(self._profiles) > self.max_users:
            self._profiles.popitem(last=False)
        return profile

    async def delete(self, user_id: str) -> bool:
        return self._profiles.pop(user_id, None) is not None

    async def close(self) -> None:
        return None
