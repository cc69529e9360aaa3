"""Faults in the middle of load, on purpose: Triton killed while searches and events stream in."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.config import GatewaySettings, PersonalizationSettings
from ranking_gateway.personalization.jsonl_log import read_records
from tests.conftest import SLOW_CI_DEADLINE_MS, gateway_client

pytestmark = pytest.mark.anyio

WORDS = ("lava", "ash", "magma", "crater", "plume", "vent", "dome", "cone", "basalt", "tephra", "caldera", "fissure")


def group_gone(pgid: int, wait_s: float = 10.0) -> bool:
    """Whether no process is left in the group (killed ones take a moment to be reaped)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


async def test_triton_killed_mid_load_answers_degrade_and_acknowledged_events_are_kept(
    artifacts: ArtifactPaths, tmp_path: Path
) -> None:
    from ranking_gateway.serving.triton_server import EmbeddedTriton

    events_dir = tmp_path / "ev"
    settings = GatewaySettings(
        artifacts=artifacts.root, triton_timeout_s=5, deadline_ms=SLOW_CI_DEADLINE_MS,
        personalization=PersonalizationSettings(event_log=events_dir),
    )
    with EmbeddedTriton(artifacts.model_repository, log_path=tmp_path / "triton.log") as triton:
        async with gateway_client(settings, triton.grpc_url) as client:
            searches: list[tuple[int, dict]] = []
            acknowledged: list[str] = []
            killed = asyncio.Event()

            async def searcher(n: int) -> None:
                for i in range(6):
                    query = f"volcano fact {WORDS[(n * 6 + i) % len(WORDS)]} {n}-{i}"
                    r = await client.post("/v1/search", json={"query": query, "k": 3, "candidates": 10})
                    searches.append((r.status_code, r.json() | {"after_kill": killed.is_set()}))

            async def clicker(n: int) -> None:
                for i in range(10):
                    user = f"user-{n}-{i}"
                    r = await client.post("/v1/events", json={"user_id": user, "doc_id": "geology-1", "type": "click"})
                    assert r.status_code == 202, r.text
                    acknowledged.append(user)
                    await asyncio.sleep(0.01)

            async def killer() -> None:
                while len(searches) < 4:
                    await asyncio.sleep(0.01)
                assert triton.pid is not None
                os.kill(triton.pid, signal.SIGKILL)
                killed.set()

            await asyncio.gather(*(searcher(n) for n in range(3)), *(clicker(n) for n in range(2)), killer())
        group = triton.pid
    assert group is not None and group_gone(group)  # stopping ended its python-backend stubs too

    statuses = {status for status, _ in searches}
    assert statuses == {200}, searches  # never a 5xx: BM25 answers when the encoder is gone
    after = [body for _, body in searches if body["after_kill"]]
    assert after and all(body["results"] for body in after)
    degraded = [body for body in after if body["degraded"]]
    assert degraded, "no search after the kill noticed it"
    assert all(set(body["degraded_reasons"]) <= {"encoder_unavailable", "reranker_unavailable"} for body in degraded)
    assert any(body["retrieval"] == "bm25" for body in degraded)
    logged = {r["user_id"] for r in read_records(events_dir) if r.get("type") == "click"}
    assert set(acknowledged) <= logged  # every 202 is in the durable log
