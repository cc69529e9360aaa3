"""The search pipeline: the user-independent ranking (cached), then the per-user step.

Cache value = every candidate with its retrieval and reranker scores, in user-independent
order. Personalisation runs after the cache on that list, so a hot query keeps its cache hit
and a user's click still changes that user's very next answer.
"""

from __future__ import annotations

import logging
import time
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio.to_thread
import numpy as np

from ranking_gateway.cache import SingleFlightCache
from ranking_gateway.config import GatewaySettings
from ranking_gateway.errors import BackendUnavailable
from ranking_gateway.metrics import GatewayMetrics
from ranking_gateway.retrieval import DocumentIndex
from ranking_gateway.schemas import SearchRequest
from ranking_gateway.scoring import interpolate
from ranking_gateway.tokenization import TextTokenizer
from ranking_gateway.triton_models import TritonModels

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Candidate:
    row: int
    retrieval_score: float
    rerank_score: float | None  # reranker logit (or its blend, see rerank_alpha); None: not reranked

    @property
    def base_score(self) -> float:
        """The user-independent score: the reranker's where it ran, else retrieval's."""
        return self.rerank_score if self.rerank_score is not None else self.retrieval_score


@dataclass(frozen=True)
class RankedCandidates:
    """The cached, user-independent part of a search."""

    candidates: tuple[Candidate, ...]
    reranked: bool
    degraded: bool
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScoredCandidate:
    candidate: Candidate
    score: float


class Personalizer(Protocol):
    """The per-user step. Returns None when it has nothing to say about this user."""

    async def personalize(
        self, user_id: str, candidates: Sequence[Candidate], request_id: str, k: int
    ) -> list[ScoredCandidate] | None: ...


def normalize_query(query: str, casefold: bool) -> str:
    text = " ".join(unicodedata.normalize("NFKC", query).split())
    return text.casefold() if casefold else text


class SearchService:
    def __init__(
        self,
        settings: GatewaySettings,
        index: DocumentIndex,
        models: TritonModels,
        encoder_tokenizer: TextTokenizer,
        reranker_tokenizer: TextTokenizer | None,
        cache: SingleFlightCache[RankedCandidates],
        metrics: GatewayMetrics,
        version_key: str,
        personalizer: Personalizer | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.models = models
        self.encoder_tokenizer = encoder_tokenizer
        self.reranker_tokenizer = reranker_tokenizer
        self.cache = cache
        self.metrics = metrics
        self.version_key = version_key
        self.personalizer = personalizer
        self._casefold = encoder_tokenizer.lowercases and (reranker_tokenizer is None or reranker_tokenizer.lowercases)

    @property
    def has_reranker(self) -> bool:
        return self.reranker_tokenizer is not None

    def cache_key(self, request: SearchRequest) -> str:
        rerank = request.rerank and self.has_reranker
        query = normalize_query(request.query, self._casefold)
        alpha = f"{self.settings.rerank_alpha:g}" if rerank else "-"
        return f"{self.version_key}|c={request.candidates}|r={int(rerank)}|a={alpha}|{query}"

    async def search(self, request: SearchRequest) -> dict:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        ranked, cached = await self.cache.get_or_compute(self.cache_key(request), lambda: self._rank(request))
        (self.metrics.cache_hits if cached else self.metrics.cache_misses).inc()
        timings = {"encode": 0.0, "retrieve": 0.0, "rerank": 0.0} if cached else dict(ranked.timings_ms)

        scored = [ScoredCandidate(c, c.base_score) for c in ranked.candidates]
        degraded, personalized = ranked.degraded, False
        if request.user_id and self.personalizer is not None:
            t0 = time.perf_counter()
            try:
                personalised = await self.personalizer.personalize(
                    request.user_id, ranked.candidates, request_id, request.k
                )
            except BackendUnavailable as exc:  # profile store down: the non-personalised ranking
                log.warning("personalisation unavailable, answering without it: %s", exc)
                self.metrics.degraded.labels(reason="personalization_unavailable").inc()
                personalised, degraded = None, True
            if personalised is not None:
                scored, personalized = personalised, True
            timings["personalize"] = (time.perf_counter() - t0) * 1000
            self.metrics.observe_stage("personalize", timings["personalize"] / 1000)

        timings["total"] = (time.perf_counter() - started) * 1000
        self.metrics.observe_stage("total", timings["total"] / 1000)
        return {
            "request_id": request_id,
            "results": [self._result(s) for s in scored[: request.k]],
            "cached": cached,
            "degraded": degraded,
            "reranked": ranked.reranked,
            "personalized": personalized,
            "timings_ms": {name: round(ms, 3) for name, ms in timings.items()},
        }

    def _result(self, scored: ScoredCandidate) -> dict:
        doc = self.index.documents[scored.candidate.row]
        return {
            "id": doc.id,
            "score": float(scored.score),
            "retrieval_score": float(scored.candidate.retrieval_score),
            "title": doc.title,
            "snippet": self.index.snippet(scored.candidate.row, self.settings.snippet_chars),
        }

    async def _rank(self, request: SearchRequest) -> tuple[RankedCandidates, bool]:
        """Encode, retrieve, rerank. Returns (ranking, cacheable): degraded answers are not cached."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        tokens = self.encoder_tokenizer.encode([request.query])
        embedding = (await self.models.encode(tokens))[0]  # BackendUnavailable propagates: no query vector, no search
        timings["encode"] = self._stage("encode", t0)

        t0 = time.perf_counter()
        rows, scores = self.index.search(embedding, request.candidates)
        candidates = [Candidate(int(r), float(s), None) for r, s in zip(rows, scores)]
        timings["retrieve"] = self._stage("retrieve", t0)

        reranked, degraded = False, False
        if request.rerank and self.has_reranker and candidates:
            t0 = time.perf_counter()
            try:
                candidates = await self._rerank(request.query, candidates)
                reranked = True
            except BackendUnavailable as exc:
                log.warning("reranker unavailable, answering with retrieval order: %s", exc)
                self.metrics.degraded.labels(reason="reranker_unavailable").inc()
                degraded = True
            timings["rerank"] = self._stage("rerank", t0)
        else:
            timings["rerank"] = 0.0
        return RankedCandidates(tuple(candidates), reranked, degraded, timings), not degraded

    async def _rerank(self, query: str, candidates: list[Candidate]) -> list[Candidate]:
        depth = min(len(candidates), self.settings.rerank_depth)
        head, tail = candidates[:depth], candidates[depth:]
        texts = [self.index.documents[c.row].full_text for c in head]
        assert self.reranker_tokenizer is not None
        tokens = await anyio.to_thread.run_sync(self.reranker_tokenizer.encode_pairs, query, texts)
        scores = await self.models.rerank(tokens)
        alpha = self.settings.rerank_alpha
        if alpha < 1.0:  # blend with the retrieval score: a weak reranker then cannot bury a good first stage
            scores = interpolate([c.retrieval_score for c in head], scores, alpha)
        order = np.argsort(-scores, kind="stable")
        return [Candidate(head[i].row, head[i].retrieval_score, float(scores[i])) for i in order] + tail

    def _stage(self, stage: str, started: float) -> float:
        seconds = time.perf_counter() - started
        self.metrics.observe_stage(stage, seconds)
        return seconds * 1000
