"""The gateway's Triton client against the real embedded server: what a cancelled call costs."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.contract import RERANKER
from ranking_gateway.core.errors import BackendUnavailable
from ranking_gateway.serving.plan import max_batch_size
from ranking_gateway.serving.tokenization import TextTokenizer
from ranking_gateway.serving.triton_client import TritonModels

pytestmark = pytest.mark.anyio


async def reranker_counts(models: TritonModels) -> tuple[int, int, int]:
    """(requests that succeeded, requests that failed, executions) of the reranker so far."""
    stats = (await models.inference_statistics(RERANKER.name))["model_stats"][0]
    infer = stats["inference_stats"]
    return (
        int(infer.get("success", {}).get("count", 0)),
        int(infer.get("fail", {}).get("count", 0)),
        int(stats.get("execution_count", 0)),
    )


async def settled_reranker_counts(models: TritonModels) -> tuple[int, int, int]:
    """`reranker_counts` once two reads 0.2 s apart agree: Triton records a request's statistics
    after its response has gone out, so a read right after an answer can miss that request
    (seen in CI: the warm-up's second call counted among the measured ones)."""
    counts = await reranker_counts(models)
    while True:
        await asyncio.sleep(0.2)
        again = await reranker_counts(models)
        if again == counts:
            return counts
        counts = again


async def queued_behind_a_full_batch(artifacts: ArtifactPaths, triton, doomed_within: float | None, cancel: bool):
    """16 one-pair requests queued behind full batches that keep the reranker's instances
    busy, given `doomed_within` (a fraction of the batch's run time) to be answered, and
    cancelled by the client after 0.2 of it when `cancel`. Returns (requests that succeeded,
    failed, executions) from Triton's statistics, what the 16 requests' call raised, and how
    many full batches kept the instances busy (two each)."""
    tokenizer = TextTokenizer(artifacts.tokenizer(RERANKER.name), 128)
    long_text = " ".join(["basalt lava flows cool into columns of rock"] * 40)  # past 128 tokens
    instances, max_batch = reranker_batching(artifacts)
    full = tokenizer.encode_pairs("why do volcanoes erupt", [long_text] * max_batch)  # one max-size batch
    busy_client = TritonModels(triton.grpc_url, timeout_s=300, chunk_size=max_batch)
    doomed_client = TritonModels(triton.grpc_url, timeout_s=300, chunk_size=1)
    try:
        await busy_client.rerank(full)  # warm, and how long one full batch takes here
        started = time.perf_counter()
        await busy_client.rerank(full)
        batch_s = time.perf_counter() - started

        before = await settled_reranker_counts(busy_client)
        # two full batches for each of the reranker's instances, so the next requests must queue
        busy = asyncio.gather(*(busy_client.rerank(full) for _ in range(2 * instances)))
        await asyncio.sleep(batch_s * 0.2)  # the full batch is executing
        within = None if doomed_within is None else batch_s * doomed_within
        doomed = asyncio.create_task(doomed_client.rerank(full.rows(0, 16), within))  # queued behind it
        await asyncio.sleep(batch_s * 0.2)
        if cancel:
            doomed.cancel()
        try:
            await doomed
            raised = None
        except (asyncio.CancelledError, BackendUnavailable) as exc:
            raised = exc
        await busy
        await asyncio.sleep(batch_s)  # anything still queued would have run by now
        counts = tuple(a - b for a, b in zip(await settled_reranker_counts(busy_client), before))
    finally:
        await busy_client.close()
        await doomed_client.close()
    return counts, raised, 2 * instances


def reranker_batching(artifacts: ArtifactPaths) -> tuple[int, int]:
    """(instances, max_batch_size) of the build's reranker, from its config.pbtxt."""
    config = (artifacts.model_repository / RERANKER.name / "config.pbtxt").read_text()
    instances = sum(int(n) for n in re.findall(r"count: (\d+)", config))
    max_batch = max_batch_size(artifacts.model_repository / RERANKER.name / "config.pbtxt")
    assert max_batch is not None
    return instances, max_batch


async def test_requests_cancelled_while_queued_are_not_computed(artifacts: ArtifactPaths, triton) -> None:
    """A search past its deadline cancels its reranker calls (`asyncio.wait_for`), and Triton
    drops those still queued: the models' queue policy is what makes it look. Without one
    (measured before it was added) all 16 were computed, and answering CANCELLED from the model
    instead (`request.is_cancelled()` in the python backend) crashed this server with SIGSEGV, as
    in triton-inference-server/server#8192."""
    (succeeded, failed, _), raised, busy = await queued_behind_a_full_batch(artifacts, triton, None, cancel=True)
    assert isinstance(raised, asyncio.CancelledError)
    assert (succeeded, failed) == (busy, 16), "requests nobody waits for were computed"


async def test_requests_still_queued_past_their_deadline_are_rejected(artifacts: ArtifactPaths, triton) -> None:
    """Also when no cancellation reaches Triton: each request carries what was left of the
    search's deadline, and the queue policy rejects it, uncomputed, once that has run out."""
    (succeeded, failed, _), raised, busy = await queued_behind_a_full_batch(artifacts, triton, 0.3, cancel=False)
    assert isinstance(raised, BackendUnavailable)
    assert (succeeded, failed) == (busy, 16)
