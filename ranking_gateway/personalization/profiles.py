"""User profiles: a time-decayed centroid of the embeddings of the documents a user interacted
with, plus counts and the most recent items, in an in-process or a Redis store.

The profile keeps `vector = sum_i w_i * 2^(-(t_ref - t_i) / half_life) * e_i` as of `t_ref`
(skips have negative `w_i`, so they push the centroid away from what was skipped). A new event
at `t >= t_ref` decays the sum to `t` and adds its term; a late event (`t < t_ref`) adds its term
already decayed, so the result does not depend on the order events arrive in.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ranking_gateway.core.errors import BackendUnavailable

DEFAULT_HALF_LIFE_S = 3 * 24 * 3600.0
DEFAULT_MAX_RECENT = 20


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
    max_recent: int = DEFAULT_MAX_RECENT,
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

    async def get(self, user_id: str) -> UserProfile | None: ...
    async def update(
        self, user_id: str, *, doc_id: str, type: str, weight: float, ts: float, embedding: np.ndarray
    ) -> UserProfile: ...
    async def delete(self, user_id: str) -> bool: ...
    async def close(self) -> None: ...


class InMemoryProfileStore:
    """Profiles in a dict (least recently updated evicted past `max_users`). Each update runs
    without an `await` between read and write, so it is atomic under asyncio."""

    def __init__(
        self,
        *,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        max_recent: int = DEFAULT_MAX_RECENT,
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


# One atomic update of a profile hash, the Lua twin of `apply_event` (vector, t_ref and mass are
# packed little-endian doubles; counts and recent are JSON). One round trip, no retries.
_UPDATE_LUA = """
local key = KEYS[1]
local ts, w, hl, maxr = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local typ, doc, emb = ARGV[5], ARGV[6], ARGV[7]
local cur = redis.call('HMGET', key, 'v', 't', 'm', 'c', 'r')
local v = cur[1]
if v and #v ~= #emb then return redis.error_reply('embedding dim does not match the profile') end
local tref, m = ts, 0
if v then tref = struct.unpack('<d', cur[2]); m = struct.unpack('<d', cur[3]) end
local keep, late, newt = 1.0, 1.0, ts
if ts >= tref then keep = 2 ^ (-(ts - tref) / hl) else late = 2 ^ (-(tref - ts) / hl); newt = tref end
local parts = {}
for i = 0, #emb / 8 - 1 do
  local x = 0
  if v then x = struct.unpack('<d', v, i * 8 + 1) end
  parts[i + 1] = struct.pack('<d', x * keep + w * late * struct.unpack('<d', emb, i * 8 + 1))
end
m = m * keep + math.abs(w) * late
local counts = {}
if cur[4] then counts = cjson.decode(cur[4]) end
counts[typ] = (counts[typ] or 0) + 1
local old = {}
if cur[5] then old = cjson.decode(cur[5]) end
-- weight and ts stay the exact strings Python sent (cjson would round numbers to 14 digits)
local recent, placed, new = {}, false, {doc, typ, ARGV[2], ARGV[1]}
for _, item in ipairs(old) do
  if not placed and tonumber(item[4]) <= ts then table.insert(recent, new); placed = true end
  table.insert(recent, item)
end
if not placed then table.insert(recent, new) end
while #recent > maxr do table.remove(recent) end
local fields = {table.concat(parts), struct.pack('<d', newt), struct.pack('<d', m), cjson.encode(counts), cjson.encode(recent)}
redis.call('HSET', key, 'v', fields[1], 't', fields[2], 'm', fields[3], 'c', fields[4], 'r', fields[5])
return fields
"""


def _decode(user_id: str, fields: list[bytes | None]) -> UserProfile | None:
    """A profile from the hash fields v, t, m, c, r (in that order)."""
    if not fields or fields[0] is None:
        return None
    vector, t_ref, mass, counts, recent = fields
    return UserProfile(
        user_id=user_id,
        vector=np.frombuffer(vector, dtype="<f8").astype(np.float64),
        t_ref=float(np.frombuffer(t_ref, dtype="<f8")[0]),
        mass=float(np.frombuffer(mass, dtype="<f8")[0]),
        counts={k: int(n) for k, n in json.loads(counts).items()},
        recent=[RecentItem(d, t, float(w), float(ts)) for d, t, w, ts in json.loads(recent)],
    )


class RedisProfileStore:
    """One hash per user (`{prefix}{user_id}`), updated by one Lua script (atomic on the server),
    so concurrent gateways never lose each other's events. Needs `decode_responses=False`."""

    def __init__(
        self,
        client: Any,
        *,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        max_recent: int = DEFAULT_MAX_RECENT,
        prefix: str = "rg:profile:",
    ) -> None:
        self.client = client  # a redis.asyncio.Redis
        self.half_life_s = half_life_s
        self.max_recent = max_recent
        self.prefix = prefix
        self._update = client.register_script(_UPDATE_LUA)

    async def get(self, user_id: str) -> UserProfile | None:
        import redis.exceptions

        try:
            fields = await self.client.hmget(self.prefix + user_id, ["v", "t", "m", "c", "r"])
        except redis.exceptions.RedisError as exc:
            raise ProfileStoreUnavailable(f"the profile store is unavailable: {exc}") from exc
        return _decode(user_id, fields)

    async def update(
        self, user_id: str, *, doc_id: str, type: str, weight: float, ts: float, embedding: np.ndarray
    ) -> UserProfile:
        import redis.exceptions

        args = [repr(float(ts)), repr(float(weight)), repr(float(self.half_life_s)), str(self.max_recent), type,
                doc_id, np.asarray(embedding, dtype="<f8").tobytes()]
        try:
            fields = await self._update(keys=[self.prefix + user_id], args=args)
        except redis.exceptions.ResponseError as exc:
            raise ValueError(str(exc)) from exc
        except redis.exceptions.RedisError as exc:
            raise ProfileStoreUnavailable(f"the profile store is unavailable: {exc}") from exc
        return _decode(user_id, fields)  # type: ignore[return-value]

    async def delete(self, user_id: str) -> bool:
        import redis.exceptions

        try:
            return bool(await self.client.delete(self.prefix + user_id))
        except redis.exceptions.RedisError as exc:
            raise ProfileStoreUnavailable(f"the profile store is unavailable: {exc}") from exc

    async def close(self) -> None:
        return None
