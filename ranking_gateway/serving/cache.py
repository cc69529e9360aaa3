"""The hot-query cache: LRU with a TTL, plus single-flight so concurrent identical misses are
computed once (the followers await the leader's result instead of hitting Triton again).

Only the user-independent part of a search is cached; personalisation runs after it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar, runtime_checkable

V = TypeVar("V")


class CacheStore(Protocol[V]):
    """Where cached values live: in-process here; a shared store (Redis) can take its place."""

    async def get(self, key: str) -> V | None: ...

    async def put(self, key: str, value: V) -> None: ...


@runtime_checkable
class SharedFlights(Protocol[V]):
    """A store shared by several gateway processes that can also tell them who computes a key,
    so identical misses on two gateways are computed once (Redis: `SET NX PX` on a lock key)."""

    async def claim(self, key: str) -> bool: ...  # True: this process computes the key

    async def release(self, key: str) -> None: ...

    async def wait_for(self, key: str) -> V | None: ...  # the other process's value; None: compute it


class LruTtlCache(Generic[V]):
    """In-process LRU bounded by entry count; entries older than `ttl_s` count as misses."""

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, value = entry
        if self._clock() - stored_at > self.ttl_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def put(self, key: str, value: V) -> None:
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class SingleFlightCache(Generic[V]):
    """`get_or_compute`: a hit, a wait on an identical in-flight computation, or a computation."""

    def __init__(self, store: CacheStore[V]) -> None:
        self.store = store
        self._shared = isinstance(store, SharedFlights)  # decided once, not on every miss
        self._in_flight: dict[str, asyncio.Future[V]] = {}

    async def get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[tuple[V, bool]]]
    ) -> tuple[V, bool]:
        """Returns (value, served_from_cache). `compute` returns (value, cacheable)."""
        value = await self.store.get(key)
        if value is not None:
            return value, True
        pending = self._in_flight.get(key)
        if pending is not None:
            return await asyncio.shield(pending), True
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        claimed = False
        try:
            if self._shared:
                claimed = await self.store.claim(key)  # type: ignore[union-attr]
                if not claimed:  # another gateway computes it: take its value when it lands
                    value = await self.store.wait_for(key)  # type: ignore[union-attr]
                    if value is not None:
                        future.set_result(value)
                        return value, True
            value, cacheable = await compute()
            if cacheable:
                await self.store.put(key, value)
            future.set_result(value)
            return value, False
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: followers re-raise it, nobody else must
            raise
        finally:
            del self._in_flight[key]
            if claimed:
                await self.store.release(key)  # type: ignore[union-attr]
