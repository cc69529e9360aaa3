"""Live swap end to end: a real embedded Triton in explicit model-control mode over a live
repository, the gateway app in-process, `POST /v1/admin/deploy` under concurrent search load.

The second build differs visibly: one document more (`live-swap-0`), which BM25 finds for its
made-up word, so every answer says which version served it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.config import BuildSettings, GatewaySettings, PersonalizationSettings
from ranking_gateway.serving.deploy import LiveTriton
from ranking_gateway.serving.live_repository import LiveRepository
from tests.conftest import CORPUS, SLOW_CI_DEADLINE_MS

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MARKER = "live-swap-0"
MARKER_QUERY = {"query": "zyxquark marker", "k": 3, "candidates": 10, "rerank": False, "retrieval": "bm25"}


@pytest.fixture(scope="module")
def second_artifacts(tmp_path_factory: pytest.TempPathFactory, untrained_reranker: Path) -> ArtifactPaths:
    """The session corpus plus one document: a build whose answers show that it serves."""
    from ranking_build.pipeline import run_build

    work = tmp_path_factory.mktemp("second")
    corpus = work / "corpus.jsonl"
    marker = {"_id": MARKER, "title": "Live swap marker", "text": "The zyxquark marker exists only in the second build."}
    corpus.write_text(CORPUS.read_text().rstrip("\n") + "\n" + json.dumps(marker) + "\n")
    run_build(BuildSettings(corpus=corpus, artifacts=work / "b", reranker=untrained_reranker, max_length=128))
    return ArtifactPaths(work / "b")


@pytest.fixture(scope="module")
def live_triton(artifacts: ArtifactPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """One explicit-mode Triton for the module, started with the session build's models."""
    from ranking_gateway.core.artifacts import Manifest
    from ranking_gateway.serving.plan import resolve
    from ranking_gateway.serving.triton_server import EmbeddedTriton

    repository = LiveRepository(tmp_path_factory.mktemp("live-repo"))
    plan = resolve(GatewaySettings(artifacts=artifacts.root))
    names = repository.add(artifacts, Manifest.read(artifacts.root).version_key, plan.triton_models)
    log_path = tmp_path_factory.mktemp("live-triton-log") / "tritonserver.log"
    with EmbeddedTriton(repository.path, log_path=log_path, load_models=list(names.values())) as server:
        yield server, repository, names


def _load(triton_url: str, names: list[str]) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton_url)
    try:
        for name in names:
            client.load_model(name)
    finally:
        client.close()


def _index(triton_url: str) -> dict[str, str]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton_url)
    try:
        models = client.get_model_repository_index(as_json=True).get("models", [])
    finally:
        client.close()
    return {m["name"]: m.get("state", "") for m in models}


@contextlib.asynccontextmanager
async def live_gateway(
    artifacts: ArtifactPaths, live_triton: tuple, tmp_path: Path, *, weights: Path | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway on the session build, its models (re)loaded on the module's Triton."""
    from ranking_gateway.core.artifacts import Manifest
    from ranking_gateway.serving.app import create_app
    from ranking_gateway.serving.plan import resolve

    triton, repository, _ = live_triton
    settings = GatewaySettings(
        artifacts=artifacts.root, triton_timeout_s=120, deadline_ms=SLOW_CI_DEADLINE_MS,
        personalization=PersonalizationSettings(event_log=tmp_path / "events", weights=weights),
    )
    plan = resolve(settings)
    names = repository.add(artifacts, Manifest.read(artifacts.root).version_key, plan.triton_models)
    await asyncio.to_thread(_load, triton.grpc_url, list(names.values()))
    app = create_app(settings, triton.grpc_url, plan, live=LiveTriton(repository, names, triton))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=600) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def _has_marker(body: dict) -> bool:
    return any(r["id"] == MARKER for r in body["results"])


async def test_swap_under_load_fails_no_request_and_switches_then_rolls_back(
    artifacts: ArtifactPaths, second_artifacts: ArtifactPaths, live_triton: tuple, tmp_path: Path
) -> None:
    triton = live_triton[0]
    async with live_gateway(artifacts, live_triton, tmp_path) as client:
        first_names = client.app.state.gateway.current.triton_names  # type: ignore[attr-defined]
        assert not _has_marker((await client.post("/v1/search", json=MARKER_QUERY)).json())
        failures: list[str] = []
        answers: list[tuple[float, bool]] = []  # (when it started, served by the new version)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def searcher(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                # a reranked search (both models, cache misses: distinct queries) and the marker one
                reranked = {"query": f"volcano eruption {n} {i}", "k": 3, "candidates": 10}
                for body in (reranked, MARKER_QUERY):
                    started = loop.time()
                    r = await client.post("/v1/search", json=body)
                    if r.status_code != 200 or r.json()["degraded"]:
                        failures.append(f"{r.status_code} {r.text[:300]}")
                    elif body is MARKER_QUERY:
                        answers.append((started, _has_marker(r.json())))

        tasks = [asyncio.create_task(searcher(n)) for n in range(4)]
        waited_until = loop.time() + 60  # the old version answers a marker search first, however loaded the machine
        while not answers and not failures and loop.time() < waited_until:
            await asyncio.sleep(0.05)
        deploy = await client.post("/v1/admin/deploy", json={"artifacts": str(second_artifacts.root), "warm": 3})
        deployed_at = loop.time()
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*tasks)

        assert deploy.status_code == 200, deploy.text
        report = deploy.json()
        assert report["to"]["artifacts"] == str(second_artifacts.root) and report["drained"]
        assert report["warmed"] >= 1 and len(report["canaries"]) == 3
        assert failures == []
        before = [new for started, new in answers if started < deployed_at - report["timings_ms"]["total"] / 1000]
        after = [new for started, new in answers if started > deployed_at]
        assert before and not any(before)  # the old version answered until the swap...
        assert after and all(after)  # ...and only the new one after it
        ready = (await client.get("/readyz")).json()
        assert ready["ready"] and ready["documents"] == len(client.app.state.gateway.index) == 31  # type: ignore[attr-defined]
        states = await asyncio.to_thread(_index, triton.grpc_url)
        new_names = client.app.state.gateway.current.triton_names  # type: ignore[attr-defined]
        assert all(states.get(name) == "READY" for name in new_names)
        assert all(states.get(name) != "READY" for name in first_names)  # the old models were unloaded
        assert sorted(report["models_unloaded"]) == sorted(first_names)
        assert triton.load_models == new_names  # a restart of Triton would load the serving version

        back = await client.post("/v1/admin/deploy", json={"rollback": True})
        assert back.status_code == 200, back.text
        assert back.json()["to"]["artifacts"] == str(artifacts.root)
        assert not _has_marker((await client.post("/v1/search", json=MARKER_QUERY)).json())
        status = (await client.get("/v1/admin/deploy")).json()
        assert status["previous"]["artifacts"] == str(second_artifacts.root)
        again = await client.post("/v1/admin/deploy", json={"artifacts": str(artifacts.root)})
        assert again.status_code == 409 and again.json()["error"]["code"] == "already_serving"


def _damaged_copy(source: ArtifactPaths, target: Path) -> ArtifactPaths:
    """`source` as a farm of symlinks, but for the query encoder's weights: garbage."""
    shutil.copytree(source.root, target, copy_function=os.symlink)
    version = target / "model_repository" / "query_encoder" / "1"
    damaged = 0
    for item in version.iterdir():
        if item.name.endswith(".onnx") or item.name.endswith(".safetensors"):
            item.unlink()
            item.write_bytes(b"not a model")
            damaged += 1
    hf = version / "hf"
    if not damaged and hf.exists():
        shutil.rmtree(hf) if hf.is_dir() and not hf.is_symlink() else hf.unlink()
        damaged += 1
    assert damaged, f"nothing to damage in {version}"
    return ArtifactPaths(target)


async def test_a_candidate_whose_model_fails_to_load_is_refused_and_the_old_version_serves(
    artifacts: ArtifactPaths, second_artifacts: ArtifactPaths, live_triton: tuple, tmp_path: Path
) -> None:
    triton = live_triton[0]
    bad = _damaged_copy(second_artifacts, tmp_path / "damaged")
    async with live_gateway(artifacts, live_triton, tmp_path) as client:
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        serving = gw.current
        r = await client.post("/v1/admin/deploy", json={"artifacts": str(bad.root)})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "model_load_failed" and "query_encoder__" in r.json()["error"]["message"]
        assert gw.current is serving
        body = (await client.post("/v1/search", json={"query": "volcano", "k": 3, "candidates": 10})).json()
        assert body["reranked"] and not body["degraded"] and len(body["results"]) == 3
        states = await asyncio.to_thread(_index, triton.grpc_url)
        assert not any(name.endswith(bad_suffix(gw, bad)) and state == "READY" for name, state in states.items())
        assert not any(p.name.endswith(bad_suffix(gw, bad)) for p in live_triton[1].path.iterdir())
        assert (await client.post("/v1/admin/deploy", json={"rollback": True})).json()["error"]["code"] == "no_previous_version"


def bad_suffix(gw: object, bad: ArtifactPaths) -> str:
    from ranking_gateway.core.artifacts import Manifest
    from ranking_gateway.serving.live_repository import version_suffix

    return version_suffix(Manifest.read(bad.root).version_key, bad.root)


async def test_personalizer_weights_swap_without_touching_triton(
    artifacts: ArtifactPaths, live_triton: tuple, tmp_path: Path
) -> None:
    from ranking_gateway.personalization.scorer import PersonalScorer

    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps(PersonalScorer().to_json()))
    async with live_gateway(artifacts, live_triton, tmp_path) as client:
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        names = gw.current.triton_names
        r = await client.post("/v1/admin/deploy", json={"personalizer_weights": str(weights)})
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["models_loaded"] == [] and report["models_unloaded"] == []
        assert report["to"]["personalizer_weights"] == str(weights)
        assert gw.current.triton_names == names and gw.current.personalization.store is not None
        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        r = await client.post("/v1/admin/deploy", json={"personalizer_weights": str(bad)})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_artifacts"
        assert gw.current.personalizer_weights == weights
