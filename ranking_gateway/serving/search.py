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

from ranking_gateway.serving.cache import SingleFlightCache
from ranking_gateway.core.config import GatewaySettings, RetrievalMode
from ranking_gateway.core.errors import BackendUnavailable
from ranking_gateway.serving.metrics import GatewayMetrics
from ranking_gateway.serving.index import DocumentIndex, fuse, resolve_retrieval
from ranking_gateway.serving.schemas import RequestError, SearchRequest
from ranking_gateway.core.scoring import interpolate
from ranking_gateway.serving.tokenization import TextTokenizer
from ranking_gateway.serving.triton_client import TritonModels

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One first-stage candidate.

    `retrieval_score` is the first stage's own score: the cosine (dense), the BM25 score (bm25)
    or the reciprocal-rank-fusion score (hybrid, sum of 1/(rrf_k + rank), at most 2/(rrf_k+1)).
    The three scales differ, and nothing compares them raw: the `--rerank-alpha` blend
    (`scoring.interpolate`) and the personaliser's `retrieval` feature
    (`personalization.scorer.candidate_features`) both z-score it within the query's candidates,
    so a weight fitted on one mode keeps meaning "how strongly the first stage favours this
    document" in another, and no per-mode calibration is needed. (Returning the cosine in
    hybrid mode instead would hide the lexical evidence from both.)
    """

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
        self, user_id: str, candidates: Sequence[Candidate], request_id: str, k: int, query: str | None = None
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
        # ValueError for a BM25 mode without a BM25 index (serve checks it first, as a CLI error)
        self.retrieval: RetrievalMode = resolve_retrieval(settings.retrieval, index.lexical is not None)

    @property
    def has_reranker(self) -> bool:
        return self.reranker_tokenizer is not None

    def rerank_settings(self) -> dict | None:
        """The reranker as served (None without one): blend weight, depth and token budget."""
        if self.reranker_tokenizer is None:
            return None
        return {
            "alpha": self.settings.rerank_alpha,
            "depth": self.settings.rerank_depth,
            "max_length": self.reranker_tokenizer.max_length,
        }

    def retrieval_mode(self, request: SearchRequest) -> RetrievalMode:
        """The request's first stage: its own `retrieval`, else the gateway's; 422 for a BM25 mode
        on artifacts without a BM25 index."""
        if request.retrieval is None:
            return self.retrieval
        try:
            return resolve_retrieval(request.retrieval, self.index.lexical is not None)
        except ValueError as exc:
            raise RequestError(422, "invalid_request", f"'retrieval': {exc}") from None

    def cache_key(self, request: SearchRequest, mode: RetrievalMode | None = None) -> str:
        """Everything the user-independent ranking depends on: index/model version, first stage
        (with its fusion constant), candidates, and the reranker's blend and token budget.
        `mode`: the request's resolved first stage, when the caller has it already."""
        rerank = request.rerank and self.has_reranker
        query = normalize_query(request.query, self._casefold)
        mode = mode or self.retrieval_mode(request)
        first = f"hybrid{self.settings.rrf_k}" if mode == "hybrid" else mode
        alpha = f"{self.settings.rerank_alpha:g}" if rerank else "-"
        length = self.reranker_tokenizer.max_length if rerank and self.reranker_tokenizer is not None else "-"
        return f"{self.version_key}|f={first}|c={request.candidates}|r={int(rerank)}|a={alpha}|L={length}|{query}"

    async def search(self, request: SearchRequest) -> dict:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        mode = self.retrieval_mode(request)
        ranked, cached = await self.cache.get_or_compute(self.cache_key(request, mode), lambda: self._rank(request, mode))
        (self.metrics.cache_hits if cached else self.metrics.cache_misses).inc()
        timings = {name: 0.0 for name in ranked.timings_ms} if cached else dict(ranked.timings_ms)

        scored = [ScoredCandidate(c, c.base_score) for c in ranked.candidates]
        degraded, personalized = ranked.degraded, False
        if request.user_id and self.personalizer is not None:
            t0 = time.perf_counter()
            try:
                personalised = await self.personalizer.personalize(
                    request.user_id, ranked.candidates, request_id, request.k, query=request.query
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
            "retrieval": mode,
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

    async def _rank(self, request: SearchRequest, mode: RetrievalMode) -> tuple[RankedCandidates, bool]:
        """Encode, retrieve, rerank. Returns (ranking, cacheable): degraded answers are not cached."""
        timings: dict[str, float] = {"encode": 0.0}
        n = request.candidates
        embedding = None
        if mode != "bm25":  # BM25 alone needs no query vector
            t0 = time.perf_counter()
            tokens = self.encoder_tokenizer.encode([request.query])
            embedding = (await self.models.encode(tokens))[0]  # BackendUnavailable propagates: no vector, no search
            timings["encode"] = self._stage("encode", t0)

        t0 = time.perf_counter()  # `retrieve` covers the whole first stage, `lexical` the BM25 part of it
        dense = self.index.search(embedding, n) if embedding is not None else None
        lexical = None
        if mode != "dense":
            t1 = time.perf_counter()
            # a sparse sum over the query's terms: CPU work, off the event loop like tokenisation
            lexical = await anyio.to_thread.run_sync(self.index.lexical_search, request.query, n)
            timings["lexical"] = self._stage("lexical", t1)
        if dense is not None and lexical is not None:
            rows, scores = fuse(dense, lexical, n, self.settings.rrf_k)
        else:
            rows, scores = dense if dense is not None else lexical  # type: ignore[misc]
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
