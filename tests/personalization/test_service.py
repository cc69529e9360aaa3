import asyncio

import numpy as np
import pytest
import redis.asyncio

from ranking_gateway.personalization.event_log import EventLogUnavailable, JsonlEventLog, RedisStreamEventLog, read_records
from ranking_gateway.personalization.events import EventError, UnknownDocument
from ranking_gateway.personalization.profiles import InMemoryProfileStore, RedisProfileStore
from ranking_gateway.personalization.service import Personalizer

rng = np.random.default_rng(1)
EMB = rng.normal(size=(10, 32)).astype(np.float32)
EMB /= np.linalg.norm(EMB, axis=1, keepdims=True)
DOC_INDEX = {f"doc{i}": i for i in range(10)}
CANDIDATES = [f"doc{i}" for i in range(10)]
PRIMARY = np.linspace(1.0, 0.1, 10)  # near-ties, in candidate order


def make(tmp_path, store=None):
    return Personalizer(embeddings=EMB, doc_index=DOC_INDEX, store=store or InMemoryProfileStore(),
                        event_log=JsonlEventLog(tmp_path / "log"))


async def search(p, user, request_id="r1"):
    return await p.personalize(user_id=user, request_id=request_id, doc_ids=CANDIDATES, primary=PRIMARY,
                               retrieval=PRIMARY, k=5)


def test_a_click_changes_the_very_next_ranking_and_is_logged_first(tmp_path):
    async def main():
        p = make(tmp_path)
        assert await search(p, None) is None
        assert await search(p, "alice") is None  # no profile: keep the non-personalised ranking
        await p.record_event({"user_id": "alice", "doc_id": "doc9", "type": "click", "request_id": "r1"})
        on_disk = [r for r in read_records(tmp_path / "log") if r["kind"] == "event"]
        after = await search(p, "alice", "r2")
        await p.event_log.close()
        return on_disk, after

    on_disk, after = asyncio.run(main())
    assert [(r["user_id"], r["doc_id"]) for r in on_disk] == [("alice", "doc9")]
    assert after is not None and after.order[0] == 9  # the last candidate, clicked, now leads
    assert after.scores == sorted(after.scores, reverse=True) and len(after.order) == 5
    impressions = [r for r in read_records(tmp_path / "log") if r["kind"] == "impression"]
    assert [(r["request_id"], r["personalized"]) for r in impressions] == [("r1", False), ("r2", True)]
    assert impressions[0]["doc_ids"] == CANDIDATES[:5] and len(impressions[0]["features"][0]) == 5


def test_refused_events_change_nothing(tmp_path):
    async def main():
        p = make(tmp_path)
        with pytest.raises(UnknownDocument):
            await p.record_event({"user_id": "bob", "doc_id": "nope", "type": "click"})
        with pytest.raises(EventError):
            await p.record_event({"user_id": "bob", "doc_id": "doc1", "type": "like"})
        profile = await p.profile("bob")
        await p.event_log.close()
        return profile

    assert asyncio.run(main()) is None
    assert list(read_records(tmp_path / "log")) == []


def test_profile_view_erase_and_rebuild_after_restart(tmp_path):
    async def main():
        p = make(tmp_path)
        for doc in ("doc1", "doc2", "doc1"):
            await p.record_event({"user_id": "carol", "doc_id": doc, "type": "click"})
        await p.record_event({"user_id": "dave", "doc_id": "doc3", "type": "purchase"})
        view = await p.profile("carol")
        await p.event_log.close()
        restarted = make(tmp_path)  # a new process: empty store, same log
        replayed = await restarted.rebuild_profiles()
        rebuilt = await restarted.profile("carol")
        erased = await restarted.erase("carol")
        gone = await restarted.profile("carol"), await restarted.profile("dave") is not None
        await restarted.event_log.close()
        return view, replayed, rebuilt, erased, gone

    view, replayed, rebuilt, erased, gone = asyncio.run(main())
    assert view["events"] == {"click": 3} and [r["doc_id"] for r in view["recent"]] == ["doc1", "doc2", "doc1"]
    assert view["nearest_documents"][0]["doc_id"] == "doc1"
    assert replayed == 4 and rebuilt["events"] == view["events"]
    assert rebuilt["nearest_documents"] == view["nearest_documents"]
    assert erased == {"user_id": "carol", "profile_deleted": True, "records_removed": 3}
    assert gone == (None, True)
    assert {r["user_id"] for r in read_records(tmp_path / "log")} == {"dave"}


def test_redis_backed_personalizer_shares_profiles_between_instances(redis_url):
    async def main():
        def instance():
            client = redis.asyncio.Redis.from_url(redis_url)
            return Personalizer(embeddings=EMB, doc_index=DOC_INDEX, store=RedisProfileStore(client),
                                event_log=RedisStreamEventLog(client)), client

        (a, ca), (b, cb) = instance(), instance()
        await a.record_event({"user_id": "erin", "doc_id": "doc8", "type": "click"})
        seen_by_b = await search(b, "erin")
        erased = await b.erase("erin")
        after = await search(a, "erin")
        await ca.aclose()
        await cb.aclose()
        return seen_by_b, erased, after

    seen_by_b, erased, after = asyncio.run(main())
    assert seen_by_b is not None and seen_by_b.order[0] == 8
    assert erased["profile_deleted"] and erased["records_removed"] == 2  # the event and b's impression
    assert after is None


def test_redis_down_refuses_the_event_and_acknowledges_nothing(dead_redis_url):
    async def main():
        client = redis.asyncio.Redis.from_url(dead_redis_url, socket_connect_timeout=0.5)
        p = Personalizer(embeddings=EMB, doc_index=DOC_INDEX, store=RedisProfileStore(client),
                         event_log=RedisStreamEventLog(client))
        with pytest.raises(EventLogUnavailable):
            await p.record_event({"user_id": "f", "doc_id": "doc1", "type": "click"})
        await client.aclose()

    asyncio.run(main())
