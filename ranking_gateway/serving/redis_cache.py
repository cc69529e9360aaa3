"""The hot-query cache in Redis, shared by several gateway processes (`--redis-url`).

A `CacheStore` for `SingleFlightCache`: the user-independent `RankedCandidates` as compact JSON
under `rg:cache:<sha256 of the key>` with the cache TTL (`SET ... PX`); Redis's own memory
policy bounds the size. A Redis failure is a miss (get) or a skipped write (put), logged, never
a failed search: the gateway then computes the ranking itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from typing import Any

from ranking_gateway.serving.search import Candidate, RankedCandidates

log = logging.getLogger(__name__)


# delete the flight lock only if this process still owns it (it may have expired and been retaken)
_RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def make_redis(url: str) -> Any:
    """An asyncio Redis client with bounded timeouts (a hung Redis must not hang requests)."""
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0)


def encode_ranked(value: RankedCandidates) -> bytes:
    return json.dumps(
        {
            "c": [[c.row, c.retrieval_score, c.rerank_score] for c in value.candidates],
            "r": value.reranked,
            "d": list(value.degraded_reasons),
            "m": value.retrieval,
            "t": value.timings_ms,
        },
        separators=(",", ":"),
    ).encode()


def decode_ranked(raw: bytes) -> RankedCandidates | None:
    """The cached ranking; None (a miss) for an entry an older gateway wrote without its mode."""
    obj = json.loads(raw)
    if "m" not in obj or not isinstance(obj["d"], list):
        return None
    return RankedCandidates(
        candidates=tuple(Candidate(int(row), float(ret), None if rr is None else float(rr)) for row, ret, rr in obj["c"]),
        reranked=bool(obj["r"]),
        degraded_reasons=tuple(obj["d"]),
        retrieval=obj["m"],
        timings_ms=dict(obj["t"]),
    )


class RedisCacheStore:
    """Also the gateways' shared single flight: the first to miss a key takes its lock
    (`SET NX PX`), the others poll for the value it puts, up to `flight_wait_s`; a lock whose
    owner died expires with its TTL, and any Redis error means "compute it yourself"."""

    def __init__(
        self, client: Any, ttl_s: float, prefix: str = "rg:cache:", flight_wait_s: float = 10.0, poll_s: float = 0.01
    ) -> None:
        self.client = client
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.prefix = prefix
        self.flight_wait_s = flight_wait_s
        self.poll_s = poll_s
        self.token = uuid.uuid4().hex  # this process's lock value: it releases only its own locks
        self._release = client.register_script(_RELEASE_IF_OWNER)

    def _key(self, key: str) -> str:
        return self.prefix + hashlib.sha256(key.encode()).hexdigest()

    def _lock(self, key: str) -> str:
        return self._key(key) + ":flight"

    async def claim(self, key: str) -> bool:
        import redis.exceptions

        try:
            return bool(await self.client.set(self._lock(key), self.token, nx=True, px=int(self.flight_wait_s * 1000)))
        except redis.exceptions.RedisError:
            return True  # no shared flight without Redis: compute here

    async def release(self, key: str) -> None:
        import redis.exceptions

        with contextlib.suppress(redis.exceptions.RedisError):
            await self._release(keys=[self._lock(key)], args=[self.token])

    async def wait_for(self, key: str) -> RankedCandidates | None:
        """The value another gateway is computing, once it lands; None when its lock goes away
        without one (it was degraded, hence not cached) or the wait runs out."""
        import redis.exceptions

        deadline = asyncio.get_running_loop().time() + self.flight_wait_s
        try:
            while asyncio.get_running_loop().time() < deadline:
                raw = await self.client.get(self._key(key))
                if raw is not None:
                    return decode_ranked(raw)
                if not await self.client.exists(self._lock(key)):
                    return await self.get(key)  # landed between the two reads, or never will
                await asyncio.sleep(self.poll_s)
        except redis.exceptions.RedisError:
            return None
        return None

    async def get(self, key: str) -> RankedCandidates | None:
        import redis.exceptions

        try:
            raw = await self.client.get(self._key(key))
        except redis.exceptions.RedisError as exc:
            log.warning("query cache (Redis) unavailable, treating as a miss: %s", exc)
            return None
        return None if raw is None else decode_ranked(raw)

    async def put(self, key: str, value: RankedCandidates) -> None:
        import redis.exceptions

        try:
            await self.client.set(self._key(key), encode_ranked(value), px=self.ttl_ms)
        except redis.exceptions.RedisError as exc:
            log.warning("query cache (Redis) unavailable, not storing: %s", exc)
