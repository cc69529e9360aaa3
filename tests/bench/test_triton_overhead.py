"""bench/triton_overhead.py against the test build: the bare loop runs the Triton model's own
CPU runtime, on requests tokenised as the gateway tokenises them, and agrees with Triton."""

from __future__ import annotations

import asyncio

import numpy as np

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.contract import RERANKER
from ranking_gateway.serving.triton_client import TritonModels
from tests.bench.bench_module import load_bench

to = load_bench("triton_overhead")


def test_the_bare_loop_computes_what_triton_computes(artifacts: ArtifactPaths, triton) -> None:
    requests = to.requests_of(artifacts, RERANKER, 128, n=3, pairs=5)
    assert [len(r) for r in requests] == [5, 5, 5] and requests[0].input_ids.shape[1] % 32 == 0
    config = asyncio.run(to.triton_config(triton.grpc_url, RERANKER.name))
    model = to.load_model(artifacts, RERANKER, config)
    bare = model.run(to.fields(requests[0], RERANKER)).reshape(-1)

    async def served() -> np.ndarray:
        models = TritonModels(triton.grpc_url, timeout_s=120, chunk_size=16)
        try:
            return await models.rerank(requests[0])
        finally:
            await models.close()

    np.testing.assert_allclose(bare, asyncio.run(served()), atol=1e-3)
    stats = to.bare_loop(model, RERANKER, requests, concurrency=2, seconds=0.5)
    assert stats["requests"] >= 2 and stats["per_s"] > 0 and stats["p99_ms"] >= stats["p50_ms"]
