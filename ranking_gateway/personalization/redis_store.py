"""Profiles shared by gateways through Redis: one hash per user (`{prefix}{user_id}`), updated by
one Lua script that runs atomically on the server, so concurrent gateways never lose each other's
events. The script is this backend's only copy of the update rule (`profiles.apply_event` is the
in-process one; tests hold them to the same results)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import redis.exceptions

from ranking_gateway.core.config import PersonalizationSettings
from ranking_gateway.personalization.profiles import ProfileStoreUnavailable, RecentItem, UserProfile

# `apply_event` on a hash: vector, t_ref and mass are packed little-endian doubles; counts and
# recent are JSON. One round trip, no retries.
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
_FIELDS = ["v", "t", "m", "c", "r"]


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


def _unavailable(exc: redis.exceptions.RedisError) -> ProfileStoreUnavailable:
    return ProfileStoreUnavailable(f"the profile store is unavailable: {exc}")


class RedisProfileStore:
    """Needs a `redis.asyncio.Redis` with `decode_responses=False`."""

    persistent = True

    def __init__(
        self,
        client: Any,
        *,
        half_life_s: float = PersonalizationSettings.half_life_s,
        max_recent: int = PersonalizationSettings.max_recent,
        prefix: str = "rg:profile:",
    ) -> None:
        self.client = client
        self.half_life_s = half_life_s
        self.max_recent = max_recent
        self.prefix = prefix
        self._update = client.register_script(_UPDATE_LUA)

    async def get(self, user_id: str) -> UserProfile | None:
        try:
            fields = await self.client.hmget(self.prefix + user_id, _FIELDS)
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from exc
        return _decode(user_id, fields)

    async def update(
        self, user_id: str, *, doc_id: str, type: str, weight: float, ts: float, embedding: np.ndarray
    ) -> UserProfile:
        args = [repr(float(ts)), repr(float(weight)), repr(float(self.half_life_s)), str(self.max_recent), type,
                doc_id, np.asarray(embedding, dtype="<f8").tobytes()]
        try:
            fields = await self._update(keys=[self.prefix + user_id], args=args)
        except redis.exceptions.ResponseError as exc:  # the script's own refusal (dim mismatch)
            raise ValueError(str(exc)) from exc
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from exc
        return _decode(user_id, fields)  # type: ignore[return-value]

    async def delete(self, user_id: str) -> bool:
        try:
            return bool(await self.client.delete(self.prefix + user_id))
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        return None
