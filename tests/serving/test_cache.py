import asyncio

import pytest

from ranking_gateway.serving.cache import LruTtlCache, SingleFlightCache

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_lru_evicts_least_recently_used() -> None:
    cache: LruTtlCache[int] = LruTtlCache(max_entries=2, ttl_s=60)
    await cache.put("a", 1)
    await cache.put("b", 2)
    assert await cache.get("a") == 1  # a is now more recent than b
    await cache.put("c", 3)
    assert await cache.get("b") is None
    assert await cache.get("a") == 1 and await cache.get("c") == 3


async def test_entries_expire_after_ttl() -> None:
    clock = FakeClock()
    cache: LruTtlCache[int] = LruTtlCache(max_entries=10, ttl_s=5, clock=clock)
    await cache.put("a", 1)
    clock.now = 4.9
    assert await cache.get("a") == 1
    clock.now = 5.1
    assert await cache.get("a") is None and len(cache) == 0


async def test_concurrent_identical_misses_compute_once() -> None:
    cache = SingleFlightCache(LruTtlCache[int](10, 60))
    calls = 0

    async def compute() -> tuple[int, bool]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 42, True

    results = await asyncio.gather(*(cache.get_or_compute("q", compute) for _ in range(10)))
    assert calls == 1
    assert [v for v, _ in results] == [42] * 10
    assert sorted(hit for _, hit in results) == [False] + [True] * 9
    assert await cache.get_or_compute("q", compute) == (42, True) and calls == 1


async def test_failures_and_uncacheable_values_are_not_stored() -> None:
    cache = SingleFlightCache(LruTtlCache[int](10, 60))

    async def fail() -> tuple[int, bool]:
        raise RuntimeError("triton down")

    async def degraded() -> tuple[int, bool]:
        return 1, False

    with pytest.raises(RuntimeError):
        await cache.get_or_compute("q", fail)
    assert await cache.get_or_compute("q", degraded) == (1, False)
    assert await cache.store.get("q") is None
