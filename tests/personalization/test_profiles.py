import asyncio

import numpy as np
import pytest
import redis.asyncio

from ranking_gateway.personalization.memory_store import InMemoryProfileStore
from ranking_gateway.personalization.profiles import ProfileStoreUnavailable, apply_event
from ranking_gateway.personalization.redis_store import RedisProfileStore

DIM = 8
E = np.eye(DIM, dtype=np.float32)


def event(doc: int, ts: float, weight: float = 1.0, type: str = "click") -> dict:
    return {"doc_id": f"d{doc}", "type": type, "weight": weight, "ts": ts, "embedding": E[doc]}


def fold(events, half_life=10.0, max_recent=20):
    profile = None
    for ev in events:
        profile = apply_event(profile, user_id="u", half_life_s=half_life, max_recent=max_recent, **ev)
    return profile


def test_one_click_points_the_centroid_at_that_document():
    p = fold([event(3, 100.0)])
    assert np.allclose(p.centroid(), E[3])
    assert p.counts == {"click": 1} and p.recent[0].doc_id == "d3"


def test_an_older_interaction_counts_half_after_one_half_life():
    p = fold([event(0, 0.0), event(1, 10.0)], half_life=10.0)
    assert np.allclose(p.vector[:2], [0.5, 1.0])
    assert p.mass == pytest.approx(1.5)
    assert p.to_json(now=20.0, half_life_s=10.0)["strength"] == pytest.approx(0.75)


def test_the_result_does_not_depend_on_arrival_order():
    events = [event(0, 5.0), event(1, 1.0, 3.0, "purchase"), event(2, 3.0, -0.5, "skip")]
    a, b = fold(events), fold(events[::-1])
    assert np.allclose(a.vector * a.decay_factor(10.0, 10.0), b.vector * b.decay_factor(10.0, 10.0))
    assert a.counts == b.counts == {"click": 1, "purchase": 1, "skip": 1}
    assert [r.doc_id for r in a.recent] == [r.doc_id for r in b.recent] == ["d0", "d2", "d1"]


def test_skips_push_the_centroid_away_and_recent_is_bounded():
    p = fold([event(0, 1.0), event(1, 1.0, -0.5, "skip")])
    assert p.vector[1] < 0 < p.vector[0]
    p = fold([event(i % DIM, float(i)) for i in range(30)], max_recent=5)
    assert [r.ts for r in p.recent] == [29.0, 28.0, 27.0, 26.0, 25.0]


def test_a_profile_of_one_skip_cancelled_has_no_centroid():
    p = fold([event(0, 1.0, 1.0), event(0, 1.0, -1.0, "skip")])
    assert p.centroid() is None


def run_store_contract(store_factory):
    """A store's profiles equal `apply_event` folded over the same events (for Redis: the Lua
    script and the Python rule agree)."""
    t0 = 1763791234.123456  # real timestamps: no precision lost on the way through the store
    events = [event(0, t0), event(1, t0 + 10.0), event(2, t0 + 5.0, -0.5, "skip"), event(3, t0 + 5.0)]

    async def main():
        store = await store_factory()
        assert await store.get("u") is None
        for ev in events:
            await store.update("u", **ev)
        got = await store.get("u")
        expected = fold(events, half_life=store.half_life_s)
        assert np.allclose(got.vector, expected.vector) and got.t_ref == expected.t_ref
        assert got.counts == expected.counts and got.recent == expected.recent
        assert await store.delete("u") is True
        assert await store.get("u") is None and await store.delete("u") is False
        await store.close()

    asyncio.run(main())


def test_in_memory_store_contract_and_eviction():
    async def make():
        return InMemoryProfileStore(half_life_s=10.0)

    run_store_contract(make)

    async def evict():
        store = InMemoryProfileStore(half_life_s=10.0, max_users=2)
        for user in ("a", "b", "c"):
            await store.update(user, **event(0, 1.0))
        return [await store.get(u) is not None for u in ("a", "b", "c")]

    assert asyncio.run(evict()) == [False, True, True]


def test_redis_store_contract(redis_url):
    async def make():
        return RedisProfileStore(redis.asyncio.Redis.from_url(redis_url), half_life_s=10.0)

    run_store_contract(make)


def test_two_clients_updating_one_profile_concurrently_lose_nothing(redis_url):
    """Two connections stand for two gateway processes; each update is one Lua script, atomic on
    the server, so 80 interleaved updates of one profile all count."""

    async def main():
        a = RedisProfileStore(redis.asyncio.Redis.from_url(redis_url), half_life_s=10.0)
        b = RedisProfileStore(redis.asyncio.Redis.from_url(redis_url), half_life_s=10.0)
        evs = [event(i % DIM, float(i % 7)) for i in range(80)]
        await asyncio.gather(*(
            (a if i % 2 else b).update("shared", **ev) for i, ev in enumerate(evs)
        ))
        got = await a.get("shared")
        await a.client.aclose()
        await b.client.aclose()
        return got, fold(evs, half_life=10.0)

    got, expected = asyncio.run(main())
    assert got.counts == {"click": 80}
    assert np.allclose(got.vector, expected.vector)


def test_redis_down_is_profile_store_unavailable(dead_redis_url):
    async def main():
        client = redis.asyncio.Redis.from_url(dead_redis_url, socket_connect_timeout=0.5)
        store = RedisProfileStore(client)
        for call in (store.get("u"), store.update("u", **event(0, 1.0)), store.delete("u")):
            with pytest.raises(ProfileStoreUnavailable):
                await call
        await client.aclose()

    asyncio.run(main())
