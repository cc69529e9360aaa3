"""`POST /v1/rerank`: the served reranker over a caller's own documents, for teams that keep
their own first stage and call rerankers in the TEI / Infinity / Cohere shape.

It runs what search runs for its rerank stage (the same reranker, token budget and Triton
models, behind the same admission gate and deadline), minus retrieval, blending, the cache and
personalisation. Without a retrieval order to fall back on, a call that cannot finish by its
deadline is an error (504 `deadline_exceeded`, the Triton calls cancelled), not a degraded answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

import numpy as np

from ranking_gateway.serving.admission import AdmissionGate, admitted
from ranking_gateway.serving.metrics import GatewayMetrics
from ranking_gateway.serving.schemas import RerankRequest
from ranking_gateway.serving.search import Deadline, LateInteractionReranker, Reranker

log = logging.getLogger(__name__)


class NoReranker(Exception):
    """The build cannot score arbitrary documents (a 501): `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class DeadlineExceeded(Exception):
    """The scoring did not finish by the call's deadline and was cancelled (a 504)."""


@dataclass(frozen=True, slots=True)
class RerankHit:
    index: int  # the document's place in the request
    score: float


@dataclass(frozen=True)
class RerankResult:
    request_id: str
    hits: list[RerankHit]  # best first, `top_n` of them
    timings_ms: dict[str, float]


def order(scores: np.ndarray, top_n: int | None) -> list[RerankHit]:
    """The documents by score, the best first; ties keep the request's order."""
    ranked = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:top_n]
    return [RerankHit(int(i), float(scores[i])) for i in ranked]


class RerankService:
    def __init__(
        self,
        reranker: Reranker | LateInteractionReranker | None,
        metrics: GatewayMetrics,
        gate: AdmissionGate | None = None,
        deadline_ms: int = 2000,
    ) -> None:
        self.reranker = reranker
        self.metrics = metrics
        self.gate = gate  # search's: one bound on the reranking work in flight, whichever route asks
        self.deadline_ms = deadline_ms

    def _check(self) -> Reranker | LateInteractionReranker:
        if self.reranker is None:
            raise NoReranker("no_reranker", "these artifacts were built without a reranker (`build --reranker`)")
        if not self.reranker.scores_texts:
            raise NoReranker(
                "no_document_encoder",
                "this late-interaction build has no document_token_encoder on Triton (it predates "
                "/v1/rerank): rebuild the artifacts to score documents outside the corpus",
            )
        return self.reranker

    async def rerank(self, request: RerankRequest) -> RerankResult:
        """The documents by the reranker's score. `NoReranker` when the build cannot score text,
        `Overloaded` when the admission gate has no room before the deadline, `DeadlineExceeded`
        past it, `BackendUnavailable` when Triton fails."""
        reranker = self._check()
        started = time.perf_counter()
        deadline = Deadline.after(request.timeout_ms if request.timeout_ms is not None else self.deadline_ms)
        async with admitted(self.gate, deadline.left_s()):  # Overloaded when there is no room
            t0 = time.perf_counter()
            try:
                # past the deadline the scoring is cancelled: its Triton calls with it (and those
                # still queued in Triton then are rejected there, uncomputed)
                scoring = reranker.score(request.query, list(request.documents), deadline.left_s())
                scores = await asyncio.wait_for(scoring, deadline.left_s())
            except asyncio.TimeoutError:
                log.warning("rerank of %d documents cancelled at its deadline", len(request.documents))
                raise DeadlineExceeded("the rerank did not finish before the deadline (`timeout_ms`)") from None
            rerank_ms = (time.perf_counter() - t0) * 1000
        total_s = time.perf_counter() - started
        self.metrics.observe_stage("rerank_api", total_s)
        timings = {"rerank": rerank_ms, "total": total_s * 1000}
        return RerankResult(uuid.uuid4().hex, order(scores, request.top_n), timings)
