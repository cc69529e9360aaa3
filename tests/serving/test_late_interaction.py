"""The gateway serving a late-interaction build: query token vectors from the real embedded
Triton, MaxSim over the build's token store, and the start-up refusals of a bad store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.config import GatewaySettings
from ranking_gateway.core.token_store import VECTORS, TokenStore, TokenStoreError
from ranking_gateway.serving.plan import PlanError, resolve
from tests.conftest import SLOW_CI_DEADLINE_MS, gateway_client

pytestmark = pytest.mark.anyio


def _store(artifacts: ArtifactPaths) -> TokenStore:
    manifest = Manifest.read(artifacts.root)
    return TokenStore.open(artifacts.root / manifest.token_store.path, documents=manifest.documents, dim=manifest.token_store.dim)


async def test_search_reranks_by_maxsim_over_the_store(late_artifacts: ArtifactPaths, late_triton, late_reranker: Path) -> None:
    """The served head is the candidates ordered by MaxSim of the PyTorch query side over the store."""
    import torch
    from transformers import AutoTokenizer

    from ranking_build.late_interaction import load_late_interaction

    settings = GatewaySettings(
        artifacts=late_artifacts.root, triton_timeout_s=120, deadline_ms=SLOW_CI_DEADLINE_MS, rerank_alpha=1.0
    )
    query = "what makes a volcano erupt"
    async with gateway_client(settings, late_triton.grpc_url) as client:
        ready = (await client.get("/readyz")).json()
        assert ready["models"] == {"query_encoder": True, "query_token_encoder": True, "document_token_encoder": True}
        assert ready["rerank"]["kind"] == "late-interaction"
        plain = (await client.post("/v1/search", json={"query": query, "k": 10, "candidates": 10, "rerank": False})).json()
        body = (await client.post("/v1/search", json={"query": query, "k": 10, "candidates": 10})).json()
    assert body["reranked"] and not body["degraded"] and body["timings_ms"]["rerank"] > 0
    assert {r["id"] for r in body["results"]} == {r["id"] for r in plain["results"]}

    config, query_side, _ = load_late_interaction(late_reranker)
    enc = AutoTokenizer.from_pretrained(str(late_reranker))([query], truncation=True, max_length=config.query_max_length,
                                                             return_tensors="pt")
    with torch.inference_mode():
        vectors = query_side(enc["input_ids"], enc["attention_mask"])[0].numpy()
    ids = [json.loads(line)["_id"] for line in late_artifacts.documents.read_text().splitlines()]
    rows = [ids.index(r["id"]) for r in plain["results"]]
    expected = _store(late_artifacts).maxsim(vectors, rows)
    served = [r["score"] for r in body["results"]]
    assert [r["id"] for r in body["results"]] == [ids[rows[i]] for i in np.argsort(-expected, kind="stable")]
    np.testing.assert_allclose(sorted(served, reverse=True), np.sort(expected)[::-1], atol=1e-3)


async def test_a_corrupt_store_stops_start_up(late_artifacts: ArtifactPaths, tmp_path: Path) -> None:
    copy = tmp_path / "a"
    shutil.copytree(late_artifacts.root, copy, ignore=shutil.ignore_patterns("model_repository", "onnx"))
    vectors = copy / "token_store" / VECTORS
    data = bytearray(vectors.read_bytes())
    data[-3] ^= 0x10
    vectors.write_bytes(bytes(data))
    with pytest.raises(TokenStoreError, match="differ from the manifest's sha256"):
        resolve(GatewaySettings(artifacts=copy))
    vectors.unlink()
    with pytest.raises(TokenStoreError, match="vectors.npy missing"):
        resolve(GatewaySettings(artifacts=copy))


async def test_a_manifest_without_its_store_is_refused(late_artifacts: ArtifactPaths, tmp_path: Path) -> None:
    copy = tmp_path / "a"
    shutil.copytree(late_artifacts.root, copy, ignore=shutil.ignore_patterns("model_repository", "onnx"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["token_store"] = None
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PlanError, match="no token store"):
        resolve(GatewaySettings(artifacts=copy))


async def test_query_token_budget_is_bounded_by_the_build(late_artifacts: ArtifactPaths) -> None:
    with pytest.raises(PlanError, match="between 16 and the build's reranker max length 24"):
        resolve(GatewaySettings(artifacts=late_artifacts.root, rerank_max_length=64))
    assert resolve(GatewaySettings(artifacts=late_artifacts.root, rerank_max_length=16)).rerank.max_length == 16


async def test_readiness_names_the_late_model(late_artifacts: ArtifactPaths, late_triton) -> None:
    async with gateway_client(GatewaySettings(artifacts=late_artifacts.root), late_triton.grpc_url) as client:
        r = await client.get("/readyz")
    assert isinstance(client, httpx.AsyncClient) and r.status_code == 200
