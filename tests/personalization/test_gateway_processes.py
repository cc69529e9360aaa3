"""Real `ranking-gateway serve` processes: an acknowledged event survives SIGKILL, and two
gateways share profiles and the query cache through a real redis-server."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.personalization.jsonl_log import read_records
from tests.conftest import serve_process

QUERY = {"query": "facts about science and nature", "k": 30, "candidates": 30}


def serve(artifacts: ArtifactPaths, triton_url: str, log_path: Path, *extra: str):
    return serve_process(artifacts, log_path, *extra, triton_url=triton_url)


def test_acknowledged_events_survive_sigkill_of_the_gateway(artifacts, triton, tmp_path):
    """`kill -9` while events stream in: every 202 is in the log and, after a restart, in the
    rebuilt profile. Counted, not sampled."""
    events_dir = tmp_path / "events"
    docs = ["cooking-0", "cooking-1", "cooking-2", "medicine-3"]
    acknowledged: list[int] = []
    with serve(artifacts, triton.grpc_url, tmp_path / "gw.log", "--event-log", str(events_dir)) as gw:
        positions = iter(range(100_000))
        lock = threading.Lock()

        def poster() -> None:
            with httpx.Client(base_url=gw.base_url, timeout=30) as own:
                while True:
                    with lock:
                        i = next(positions)
                    body = {"user_id": "kim", "doc_id": docs[i % len(docs)], "type": "click", "position": i}
                    try:
                        status = own.post("/v1/events", json=body).status_code
                    except httpx.TransportError:
                        return  # the gateway is gone
                    if status == 202:
                        with lock:
                            acknowledged.append(i)

        threads = [threading.Thread(target=poster) for _ in range(8)]
        for t in threads:
            t.start()
        while len(acknowledged) < 200:
            time.sleep(0.01)
        os.kill(gw.process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        gw.process.wait()  # type: ignore[attr-defined]
        for t in threads:
            t.join(30)
    logged = {r["position"] for r in read_records(events_dir) if r["kind"] == "event"}
    assert len(acknowledged) >= 200 and set(acknowledged) <= logged  # every 202 is durable
    # a restarted gateway rebuilds the profile from the log: every logged event, nothing else
    with serve(artifacts, triton.grpc_url, tmp_path / "gw.log", "--event-log", str(events_dir)) as gw:
        profile = gw.get("/v1/users/kim/profile").json()
        assert profile["events"] == {"click": len(logged)}


def test_two_gateway_processes_share_profiles_and_cache_through_redis(artifacts, triton, tmp_path, redis_url):
    flags = ("--redis-url", redis_url)
    with serve(artifacts, triton.grpc_url, tmp_path / "a.log", *flags) as a, \
         serve(artifacts, triton.grpc_url, tmp_path / "b.log", *flags) as b:
        base = a.post("/v1/search", json=QUERY).json()
        assert not base["cached"]
        clicked = base["results"][-3]["id"]
        assert a.post("/v1/events", json={"user_id": "lee", "doc_id": clicked, "type": "click",
                                          "request_id": base["request_id"]}).status_code == 202
        from_b = b.post("/v1/search", json={**QUERY, "user_id": "lee"}).json()
        assert from_b["cached"] and from_b["personalized"]  # b reuses a's cached ranking and a's profile
        order = [r["id"] for r in from_b["results"]]
        assert order.index(clicked) < [r["id"] for r in base["results"]].index(clicked) - 5
        assert b.get("/v1/users/lee/profile").json()["events"] == {"click": 1}
        assert b.delete("/v1/users/lee").json()["records_removed"] >= 1
        assert a.get("/v1/users/lee/profile").status_code == 404
        assert a.post("/v1/search", json={**QUERY, "user_id": "lee"}).json()["results"] == base["results"]
