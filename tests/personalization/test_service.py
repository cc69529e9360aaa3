import json
import asyncio
import logging
import time

import numpy as np
import pytest
import redis.asyncio

from ranking_gateway.core.config import PersonalizationSettings
from ranking_gateway.personalization.event_log import EventLogUnavailable
from ranking_gateway.personalization.events import Event
from ranking_gateway.personalization.jsonl_log import read_records
from ranking_gateway.personalization.profiles import ProfileStoreUnavailable
from ranking_gateway.personalization.service import Personalization

rng = np.random.default_rng(1)
EMB = rng.normal(size=(10, 32)).astype(np.float32)
EMB /= np.linalg.norm(EMB, axis=1, keepdims=True)
DOC_IDS = [f"doc{i}" for i in range(10)]
ROWS = np.array([4, 0, 7, 2, 9, 5, 1, 8, 3, 6])  # the cached candidates, not in index order
PRIMARY = np.linspace(1.0, 0.1, 10)  # near-ties, in candidate order
SETTINGS = PersonalizationSettings()


def open_(tmp_path, client=None) -> Personalization:
    return Personalization.open(SETTINGS, tmp_path / "log", EMB, DOC_IDS, client)


def click(user: str, doc: str, request_id: str | None = None) -> Event:
    return Event(user_id=user, doc_id=doc, type="click", ts=time.time(), request_id=request_id)


async def search(p, user, request_id="r1"):
    return await p.personalize(user, ROWS, PRIMARY, PRIMARY, request_id=request_id, k=5, query="q")


def test_a_click_changes_the_very_next_ranking_and_is_logged_first(tmp_path):
    async def main():
        p = open_(tmp_path)
        await p.start()
        assert p.has_document("doc6") and not p.has_document("nope")
        assert await search(p, "alice") is None  # no profile: keep the non-personalised ranking
        await p.record(click("alice", "doc6", "r1"))  # row 6 is the last candidate
        on_disk = [r for r in read_records(tmp_path / "log") if r["kind"] == "event"]
        after = await search(p, "alice", "r2")
        await p.close()
        return on_disk, after

    on_disk, after = asyncio.run(main())
    assert [(r["user_id"], r["doc_id"]) for r in on_disk] == [("alice", "doc6")]
    # the last candidate, clicked, now comes right after the query's likely answers (z >= 0.7)
    assert after is not None and after.order[:4] == [0, 1, 2, 9]
    assert after.scores == sorted(after.scores, reverse=True) and len(after.order) == 5
    impressions = [r for r in read_records(tmp_path / "log") if r["kind"] == "impression"]
    assert [(r["request_id"], r["personalized"], r["query"]) for r in impressions] == [
        ("r1", False, "q"), ("r2", True, "q")
    ]
    assert impressions[0]["doc_ids"] == [DOC_IDS[r] for r in ROWS[:5]] and len(impressions[0]["features"][0]) == 5
    assert impressions[1]["doc_ids"][3] == "doc6"


def test_profile_view_erase_and_replay_at_start(tmp_path, caplog):
    async def main():
        p = open_(tmp_path)
        await p.start()
        for doc in ("doc1", "doc2", "doc1"):
            await p.record(click("carol", doc))
        await p.record(Event(user_id="dave", doc_id="doc3", type="purchase", ts=time.time()))
        view = await p.profile("carol")
        await p.close()
        restarted = open_(tmp_path)  # a new process: empty store, same log
        with caplog.at_level(logging.INFO, logger="ranking_gateway.personalization.service"):
            await restarted.start()
        rebuilt = await restarted.profile("carol")
        erased = await restarted.erase("carol")
        gone = await restarted.profile("carol"), await restarted.profile("dave") is not None
        await restarted.close()
        return view, rebuilt, erased, gone

    view, rebuilt, erased, gone = asyncio.run(main())
    assert view["events"] == {"click": 3} and [r["doc_id"] for r in view["recent"]] == ["doc1", "doc2", "doc1"]
    assert view["nearest_documents"][0]["doc_id"] == "doc1"
    assert "4 events replayed" in caplog.text and "JSON lines in" in caplog.text
    assert rebuilt["events"] == view["events"] and rebuilt["nearest_documents"] == view["nearest_documents"]
    assert erased == {"user_id": "carol", "profile_deleted": True, "records_removed": 3}
    assert gone == (None, True)
    assert {r["user_id"] for r in read_records(tmp_path / "log")} == {"dave"}


def test_redis_backed_instances_share_profiles_and_do_not_replay(tmp_path, redis_url, caplog):
    async def main():
        ca, cb = redis.asyncio.Redis.from_url(redis_url), redis.asyncio.Redis.from_url(redis_url)
        a, b = open_(tmp_path, ca), open_(tmp_path, cb)
        await a.record(click("erin", "doc8"))
        with caplog.at_level(logging.INFO, logger="ranking_gateway.personalization.service"):
            await b.start()
        seen_by_b = await search(b, "erin")
        erased = await b.erase("erin")
        after = await search(a, "erin")
        await a.close()
        await b.close()
        await ca.aclose()
        await cb.aclose()
        return seen_by_b, erased, after

    seen_by_b, erased, after = asyncio.run(main())
    # b sees a's click at once: doc8 right after the query's likely answers (z >= 0.7)
    assert seen_by_b is not None and seen_by_b.order[:4] == [0, 1, 2, list(ROWS).index(8)]
    assert erased["profile_deleted"] and erased["records_removed"] == 2  # the event and b's impression
    assert after is None
    assert "appendonly=no" in caplog.text and "replayed" not in caplog.text
    assert not (tmp_path / "log").exists()  # the JSONL directory is not used with Redis


def test_redis_down_refuses_the_event_and_fails_the_personal_step(tmp_path, dead_redis_url):
    async def main():
        client = redis.asyncio.Redis.from_url(dead_redis_url, socket_connect_timeout=0.5)
        p = open_(tmp_path, client)
        with pytest.raises(EventLogUnavailable):
            await p.record(click("f", "doc1"))
        with pytest.raises(ProfileStoreUnavailable):
            await search(p, "f")
        await client.aclose()

    asyncio.run(main())


def test_settings_choose_the_protected_head_and_the_weights(tmp_path):
    from dataclasses import replace

    from ranking_gateway.personalization.scorer import DEFAULT_WEIGHTS, LEGACY_WEIGHTS, PersonalScorer

    default = Personalization.open(SETTINGS, tmp_path / "a", EMB, DOC_IDS).scorer
    assert default.protect_head_z == 0.7 and default.weights.tolist() == list(DEFAULT_WEIGHTS)
    weights = tmp_path / "legacy.json"
    weights.write_text(json.dumps(PersonalScorer(weights=np.array(LEGACY_WEIGHTS)).to_json()))
    legacy = Personalization.open(replace(SETTINGS, weights=weights, protect_head_z=None), tmp_path / "b", EMB,
                                  DOC_IDS).scorer
    assert legacy.protect_head_z is None and legacy.weights.tolist() == list(LEGACY_WEIGHTS)
    with pytest.raises(ValueError):
        Personalization.open(replace(SETTINGS, protect_head_z=float("inf")), tmp_path / "c", EMB, DOC_IDS)


def test_a_clear_winner_keeps_its_place_for_a_user_with_a_profile(tmp_path):
    async def main():
        p = open_(tmp_path)
        primary = np.array([9.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])  # ROWS[0] far ahead
        await p.record(click("bob", "doc6"))  # row 6: the last candidate
        out = await p.personalize("bob", ROWS, primary, primary, request_id="r", k=5, query="q")
        await p.close()
        return out

    out = asyncio.run(main())
    assert out.order[:2] == [0, 9]  # the winner stays first, the clicked document comes right after
