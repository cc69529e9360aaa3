"""Personalisation through the gateway: httpx -> Starlette app -> real Triton, real event log."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.config import GatewaySettings, PersonalizationSettings
from ranking_gateway.personalization.jsonl_log import read_records
from tests.conftest import SLOW_CI_DEADLINE_MS, gateway_client

pytestmark = pytest.mark.anyio

QUERY = {"query": "facts about science and nature", "k": 30, "candidates": 30}


def settings(artifacts: ArtifactPaths, tmp_path, **kw) -> GatewaySettings:
    return GatewaySettings(
        artifacts=artifacts.root, personalization=PersonalizationSettings(event_log=tmp_path / "ev"),
        deadline_ms=SLOW_CI_DEADLINE_MS, **kw,
    )


@pytest.fixture
async def pclient(artifacts: ArtifactPaths, triton, tmp_path):
    async with gateway_client(settings(artifacts, tmp_path), triton.grpc_url) as c:
        yield c


def ids(body: dict) -> list[str]:
    return [r["id"] for r in body["results"]]


async def test_a_click_changes_the_very_next_search_and_the_cache_still_serves(pclient: httpx.AsyncClient, tmp_path):
    base = (await pclient.post("/v1/search", json=QUERY)).json()
    # a user without a profile gets exactly the non-personalised ranking and scores
    anon = (await pclient.post("/v1/search", json={**QUERY, "user_id": "ann"})).json()
    assert anon["cached"] and not anon["personalized"]
    assert anon["results"] == base["results"]
    clicked = base["results"][-3]["id"]
    r = await pclient.post("/v1/events", json={"user_id": "ann", "doc_id": clicked, "type": "click",
                                               "request_id": anon["request_id"], "position": 28})
    assert (r.status_code, r.json()) == (202, {"accepted": True})
    # where its time went, for clients and benchmarks: the durable append, then the profile
    steps = dict(part.strip().split(";dur=") for part in r.headers["server-timing"].split(","))
    assert set(steps) == {"log", "profile"} and all(float(ms) >= 0 for ms in steps.values())
    after = (await pclient.post("/v1/search", json={**QUERY, "user_id": "ann"})).json()
    assert after["cached"] and after["personalized"] and "personalize" in after["timings_ms"]
    assert ids(after).index(clicked) < ids(base).index(clicked) - 5
    assert ids(after) != ids(base) and sorted(ids(after)) == sorted(ids(base))
    scores = [x["score"] for x in after["results"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    # other users and anonymous searches are untouched
    assert (await pclient.post("/v1/search", json=QUERY)).json()["results"] == base["results"]
    assert (await pclient.post("/v1/search", json={**QUERY, "user_id": "bob"})).json()["results"] == base["results"]
    # the log holds the event, and impressions under each request id for train-personalizer
    await pclient.app.state.gateway.personalization.event_log.flush()  # impressions are not awaited
    records = list(read_records(tmp_path / "ev"))
    events = [x for x in records if x["kind"] == "event"]
    assert [(e["user_id"], e["doc_id"], e["request_id"]) for e in events] == [("ann", clicked, anon["request_id"])]
    impressions = {x["request_id"]: x for x in records if x["kind"] == "impression"}
    assert impressions[anon["request_id"]]["doc_ids"] == ids(base)
    assert impressions[after["request_id"]]["personalized"] is True


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"user_id": "u", "doc_id": "no-such-doc", "type": "click"}, 404, "unknown_document"),
        ({"user_id": "u", "doc_id": "cooking-1", "type": "like"}, 422, "invalid_request"),
        ({"user_id": "u", "doc_id": "cooking-1", "type": "click", "rating": 5}, 422, "unknown_field"),
        ({"user_id": "", "doc_id": "cooking-1", "type": "click"}, 422, "invalid_request"),
        ([1, 2], 422, "invalid_request"),
    ],
)
async def test_bad_events_are_json_4xx_and_change_nothing(pclient, tmp_path, body, status, code):
    r = await pclient.post("/v1/events", json=body)
    assert r.status_code == status and r.json()["error"]["code"] == code and r.json()["error"]["message"]
    assert (await pclient.get("/v1/users/u/profile")).status_code == 404
    assert [x for x in read_records(tmp_path / "ev") if x["kind"] == "event"] == []


async def test_invalid_json_event_is_400(pclient):
    r = await pclient.post("/v1/events", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


async def test_profile_view_and_erasure(pclient, tmp_path):
    for doc, kind in (("cooking-1", "click"), ("cooking-2", "purchase"), ("sports-0", "skip")):
        assert (await pclient.post("/v1/events", json={"user_id": "cat", "doc_id": doc, "type": kind})).status_code == 202
    assert (await pclient.post("/v1/events", json={"user_id": "dan", "doc_id": "sports-1", "type": "click"})).status_code == 202
    profile = (await pclient.get("/v1/users/cat/profile")).json()
    assert profile["events"] == {"click": 1, "purchase": 1, "skip": 1}
    assert [x["doc_id"] for x in profile["recent"]][0] == "sports-0"
    assert profile["nearest_documents"][0]["doc_id"].startswith("cooking-")
    r = await pclient.delete("/v1/users/cat")
    assert r.json() == {"user_id": "cat", "profile_deleted": True, "records_removed": 3}
    assert (await pclient.get("/v1/users/cat/profile")).json()["error"]["code"] == "no_profile"
    assert {x["user_id"] for x in read_records(tmp_path / "ev")} == {"dan"}
    assert (await pclient.get("/v1/users/dan/profile")).status_code == 200


async def test_redis_down_events_503_and_searches_degrade(artifacts, triton, tmp_path, dead_redis_url):
    # one reranker request a search (30 pairs): the int8 reranker quantises each execution's
    # activations with one scale, so two chunks that run apart score a little differently from
    # two merged, and with two instances either can happen; this test compares two computed searches
    gateway = settings(artifacts, tmp_path, redis_url=dead_redis_url, rerank_chunk_size=32)
    async with gateway_client(gateway, triton.grpc_url) as c:
        r = await c.post("/v1/events", json={"user_id": "eve", "doc_id": "cooking-1", "type": "click"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "backend_unavailable"
        plain = await c.post("/v1/search", json=QUERY)
        assert plain.status_code == 200 and not plain.json()["degraded"]  # the cache miss is computed
        personal = await c.post("/v1/search", json={**QUERY, "user_id": "eve"})
        assert personal.status_code == 200
        assert personal.json()["degraded"] and not personal.json()["personalized"]
        assert personal.json()["degraded_reasons"] == ["personalization_unavailable"]
        assert personal.json()["results"] == plain.json()["results"]
        assert (await c.get("/v1/users/eve/profile")).status_code == 503


async def test_identical_misses_on_two_gateways_are_computed_once(artifacts, triton, tmp_path, redis_url):
    """Cross-process single flight: the gateway that misses first computes, the other takes its
    value from Redis when it lands instead of ranking the same query again."""
    s = settings(artifacts, tmp_path, redis_url=redis_url)
    async with gateway_client(s, triton.grpc_url) as a, gateway_client(s, triton.grpc_url) as b:
        for n in range(3):
            body = {"query": f"volcanic eruptions and lava flows {n}", "k": 3, "candidates": 10}
            ra, rb = await asyncio.gather(a.post("/v1/search", json=body), b.post("/v1/search", json=body))
            answers = [ra.json(), rb.json()]
            assert sorted(x["cached"] for x in answers) == [False, True], answers
            assert ids(answers[0]) == ids(answers[1])
        exposition = "\n".join([(await c.get("/metrics")).text for c in (a, b)])

    def total(name: str) -> float:
        return sum(float(line.split()[-1]) for line in exposition.splitlines() if line.startswith(name + " "))

    assert (total("ranking_gateway_cache_misses_total"), total("ranking_gateway_cache_hits_total")) == (3, 3)


async def test_profiles_and_cache_are_shared_through_redis(artifacts, triton, tmp_path, redis_url):
    s = settings(artifacts, tmp_path, redis_url=redis_url)
    async with gateway_client(s, triton.grpc_url) as a, gateway_client(s, triton.grpc_url) as b:
        base = (await a.post("/v1/search", json=QUERY)).json()
        clicked = base["results"][-2]["id"]
        assert (await a.post("/v1/events", json={"user_id": "fay", "doc_id": clicked, "type": "click"})).status_code == 202
        seen_by_b = (await b.post("/v1/search", json={**QUERY, "user_id": "fay"})).json()
        assert seen_by_b["cached"] and seen_by_b["personalized"]  # b never computed this query itself
        assert ids(seen_by_b).index(clicked) < ids(base).index(clicked)
        assert (await b.get("/v1/users/fay/profile")).json()["events"] == {"click": 1}
        assert (await b.delete("/v1/users/fay")).json()["profile_deleted"] is True
        assert (await a.get("/v1/users/fay/profile")).status_code == 404
