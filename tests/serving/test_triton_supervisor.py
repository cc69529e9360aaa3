"""Triton dies under load and comes back: embedded (the supervisor restarts it) or external (the
gateway's channel finds it again). Real processes, loopback only, bounded in time."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.config import GatewaySettings
from tests.conftest import SLOW_CI_DEADLINE_MS, gateway_client, serve_process
from tests.serving.test_command import alive, children_of

RECOVERY_BOUND_S = 180  # a restart loads every python-backend model again; CI machines are small


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_a_killed_embedded_triton_is_restarted_and_searches_recover(artifacts: ArtifactPaths, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with serve_process(artifacts, log, ready="/readyz") as client:
        (old,) = children_of(client.process.pid)  # type: ignore[attr-defined]
        answers: list[tuple[int, dict]] = []
        stop = threading.Event()
        queries = (f"volcano rock {i}" for i in itertools.count())  # distinct: no cache hit hides the outage

        def searcher() -> None:
            with httpx.Client(base_url=client.base_url, timeout=120) as own:
                while not stop.is_set():
                    r = own.post("/v1/search", json={"query": next(queries), "k": 3, "candidates": 10})
                    answers.append((r.status_code, r.json()))

        threads = [threading.Thread(target=searcher) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            killed = time.monotonic()
            os.kill(old, signal.SIGKILL)
            recovered_after = None
            while time.monotonic() - killed < RECOVERY_BOUND_S:
                body = client.post("/v1/search", json={"query": f"lava {time.monotonic()}", "k": 3}).json()
                if time.monotonic() - killed > 0.5 and body["reranked"] and not body["degraded"]:
                    recovered_after = time.monotonic() - killed
                    break
                time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        assert recovered_after is not None, f"no normal answer {RECOVERY_BOUND_S} s after the kill: {log.read_text()[-2000:]}"
        print(f"time to recovery: {recovered_after:.1f} s")

        # every answer on the way was JSON: normal, degraded (BM25 while the encoder was gone) or 503
        assert answers and {status for status, _ in answers} <= {200, 503}, answers
        assert any(body.get("degraded") for status, body in answers if status == 200), "nobody saw the outage"
        exposition = client.get("/metrics").text
        assert metric(exposition, "ranking_gateway_triton_exits_total") == 1
        assert metric(exposition, "ranking_gateway_triton_restarts_total") >= 1
        assert metric(exposition, "ranking_gateway_triton_recovery_seconds_count") == 1
        assert client.get("/readyz").status_code == 200
        (new,) = children_of(client.process.pid)  # type: ignore[attr-defined]
        assert new != old
        assert "restarting it" in log.read_text()
        # the gateway stops the server it restarted, in bounded time (EmbeddedTriton.stop_timeout_s)
        os.kill(client.process.pid, signal.SIGTERM)  # type: ignore[attr-defined]
        assert client.process.wait(timeout=60) == 0, log.read_text()[-3000:]  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while alive(new) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(new), f"the restarted Triton outlived the gateway: {log.read_text()[-3000:]}"


@pytest.mark.anyio
async def test_with_an_external_triton_the_gateway_recovers_when_it_comes_back(
    artifacts: ArtifactPaths, tmp_path: Path
) -> None:
    from ranking_gateway.serving.triton_server import EmbeddedTriton

    first = EmbeddedTriton(artifacts.model_repository, log_path=tmp_path / "first.log").start()
    settings = GatewaySettings(artifacts=artifacts.root, triton_timeout_s=5, deadline_ms=SLOW_CI_DEADLINE_MS)
    async with gateway_client(settings, first.grpc_url) as client:
        assert (await client.post("/v1/search", json={"query": "lava", "k": 3})).json()["reranked"]
        first.stop()
        down = (await client.post("/v1/search", json={"query": "magma", "k": 3})).json()
        assert down["degraded"] and down["retrieval"] == "bm25"

        # the same server comes back on the same ports, as a restarted container would
        second = EmbeddedTriton(
            artifacts.model_repository, log_path=tmp_path / "second.log",
            http_port=first.http_port, grpc_port=first.grpc_port, metrics_port=first.metrics_port,
        ).start()
        try:
            back = time.monotonic()
            while True:
                body = (await client.post("/v1/search", json={"query": f"ash {time.monotonic()}", "k": 3})).json()
                if body["reranked"] and not body["degraded"]:
                    break
                assert time.monotonic() - back < 10, "the gateway did not use the server that came back"
                await asyncio.sleep(0.2)
            print(f"answering normally {time.monotonic() - back:.2f} s after Triton was ready again")
        finally:
            second.stop()
