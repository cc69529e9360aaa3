"""The hot-query cache in Redis, shared by several gateway processes (`--redis-url`).

A `CacheStore` for `SingleFlightCache`: the user-independent `RankedCandidates` as compact JSON
under `rg:cache:<sha256 of the key>` with the cache TTL (`SET ... PX`); Redis's own memory
policy bounds the size. A Redis failure is a miss (get) or a skipped write (put), logged, never
a failed search: the gateway then computes the ranking itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from ranking_gateway.serving.search import Candidate, RankedCandidates

log = logging.getLogger(__name__)


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
    def __init__(self, client: Any, ttl_s: float, prefix: str = "rg:cache:") -> None:
        self.client = client
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return self.prefix + hashlib.sha256(key.encode()).hexdigest()

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
