"""Redis killed in the middle of load, on purpose: searches keep answering, events stop being
acknowledged, and every event that was acknowledged is still there when Redis comes back."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
import redis.asyncio

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.config import GatewaySettings
from ranking_gateway.personalization.redis_stream_log import RedisStreamEventLog
from tests.conftest import SLOW_CI_DEADLINE_MS, gateway_client
from tests.personalization.conftest import start_redis

pytestmark = pytest.mark.anyio

# what a deployment that must not lose an acknowledged event runs Redis with
DURABLE = ("--appendonly", "yes", "--appendfsync", "always")


async def test_redis_killed_mid_load_keeps_every_acknowledged_event(
    artifacts: ArtifactPaths, triton, tmp_path: Path
) -> None:
    server = start_redis(tmp_path / "redis", *DURABLE)
    try:
        settings = GatewaySettings(artifacts=artifacts.root, deadline_ms=SLOW_CI_DEADLINE_MS, redis_url=server.url)
        async with gateway_client(settings, triton.grpc_url) as client:
            acknowledged: list[str] = []
            refused: list[int] = []
            searches: list[tuple[int, dict]] = []
            killed = asyncio.Event()

            async def clicker(n: int) -> None:
                for i in range(15):
                    r = await client.post("/v1/events", json={"user_id": f"u{n}", "doc_id": f"geology-{i % 3}",
                                                              "type": "click", "ts": 1_700_000_000 + i})
                    if r.status_code == 202:
                        acknowledged.append(f"u{n}:{i}")
                    else:
                        refused.append(r.status_code)
                    await asyncio.sleep(0.02)

            async def searcher() -> None:
                i = 0
                while sum(body["after_kill"] for _, body in searches) < 3:  # some before the kill, 3 after
                    i += 1
                    started_after = killed.is_set()  # a search in flight across the kill counts as before
                    r = await client.post("/v1/search", json={"query": f"volcano fact {i}", "k": 3,
                                                              "candidates": 10, "user_id": "u0"})
                    searches.append((r.status_code, r.json() | {"after_kill": started_after}))

            async def killer() -> None:
                while len(acknowledged) < 8:
                    await asyncio.sleep(0.01)
                os.kill(server.process.pid, signal.SIGKILL)
                server.process.wait()
                killed.set()

            await asyncio.gather(clicker(0), clicker(1), searcher(), killer())

        assert acknowledged and refused and set(refused) == {503}  # after the kill: refused, never acknowledged
        assert {status for status, _ in searches} == {200}
        after = [body for _, body in searches if body["after_kill"]]
        assert len(after) == 3 and all(  # answered from a fresh ranking (the cache is gone too), unpersonalised
            b["degraded_reasons"] == ["personalization_unavailable"] and not b["personalized"] and b["results"]
            for b in after
        )

        server = start_redis(server.directory, *DURABLE, port=server.port)  # the same data directory
        client = redis.asyncio.Redis.from_url(server.url)
        try:
            logged = [r async for r in RedisStreamEventLog(client).records()]
        finally:
            await client.aclose()
        kept = {f"{r['user_id']}:{int(r['ts']) - 1_700_000_000}" for r in logged if r.get("type") == "click"}
        assert set(acknowledged) <= kept
    finally:
        server.stop()
