"""The search pipeline: the user-independent ranking (cached), then the per-user step.

Cache value = every candidate with its retrieval and reranker scores, in user-independent
order. Personalisation runs after the cache on that list, so a hot query keeps its cache hit
and a user's click still changes that user's very next answer. The pipeline returns typed
results; rendering them as JSON is the routes' job.
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio.to_thread
import numpy as np

from ranking_gateway.core.config import RetrievalMode
from ranking_gateway.core.errors import BackendUnavailable
from ranking_gateway.core.first_stage import fuse
from ranking_gateway.core.scoring import interpolate, onto_head_scale
from ranking_gateway.core.token_store import TokenStore, maxsim
from ranking_gateway.personalization.service import Personalization
from ranking_gateway.serving.admission import AdmissionGate, admitted
from ranking_gateway.serving.cache import SingleFlightCache
from ranking_gateway.serving.index import DocumentIndex
from ranking_gateway.serving.metrics import GatewayMetrics
from ranking_gateway.serving.plan import RerankPlan, ServingPlan
from ranking_gateway.serving.schemas import SearchRequest
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
    document" in another, and no per-mode calibration is needed.
    """

    row: int
    retrieval_score: float
    rerank_score: float | None  # reranker logit (or its blend, see rerank alpha); None: not reranked

    @property
    def base_score(self) -> float:
        """The user-independent score: the reranker's where it ran, else retrieval's."""
        return self.rerank_score if self.rerank_score is not None else self.retrieval_score


@dataclass(frozen=True)
class PersonalizationInputs:
    """What the profile re-ranks, in the user-independent order: every candidate's index row,
    `primary` score and first-stage score, and `head`, how many lead that the reranker scored
    (None: it did not run)."""

    rows: np.ndarray
    primary: np.ndarray
    retrieval: np.ndarray
    head: int | None


def personalization_inputs(candidates: Sequence[Candidate]) -> PersonalizationInputs:
    """Every candidate goes to the profile, not only the reranked head: the profile can bring in
    a document the first stage ranked 31st to 100th (docs/personalization.md, "v5": most of the
    personal gain comes from there). The reranker did not score that tail, so its `primary` is
    its first-stage score put on the reranker's scale (`scoring.onto_head_scale`: the head's own
    fit, capped below the head), and the personaliser z-scores `primary` against the head alone,
    so a reranker's clear winner stays one however long the tail."""
    reranked = 0
    while reranked < len(candidates) and candidates[reranked].rerank_score is not None:
        reranked += 1
    rows = np.array([c.row for c in candidates], dtype=np.int64)
    retrieval = np.array([c.retrieval_score for c in candidates], dtype=np.float64)
    primary = np.array([c.base_score for c in candidates], dtype=np.float64)
    if 0 < reranked < len(candidates):
        primary[reranked:] = onto_head_scale(primary[:reranked], retrieval[:reranked], retrieval[reranked:])
    return PersonalizationInputs(rows, primary, retrieval, reranked or None)


@dataclass(frozen=True)
class RankedCandidates:
    """The cached, user-independent part of a search."""

    candidates: tuple[Candidate, ...]
    reranked: bool
    degraded_reasons: tuple[str, ...]  # empty: nothing was skipped (only such rankings are cached)
    retrieval: RetrievalMode  # the first stage that answered: BM25 when the encoder could not
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    row: int
    score: float  # what the answer is ordered by: personalised, reranked or retrieval score
    retrieval_score: float


@dataclass(frozen=True)
class SearchResult:
    request_id: str
    hits: list[Hit]
    cached: bool
    degraded_reasons: tuple[str, ...]  # schemas.DEGRADED_REASONS; empty when nothing was skipped
    reranked: bool
    personalized: bool
    retrieval: RetrievalMode
    timings_ms: dict[str, float]

    @property
    def degraded(self) -> bool:
        return bool(self.degraded_reasons)


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a search must have answered, on the event loop's clock; each stage gets what is left."""

    at: float

    @classmethod
    def after(cls, ms: int) -> Deadline:
        return cls(asyncio.get_running_loop().time() + ms / 1000)

    def left_s(self) -> float:
        """Seconds left, never negative (0: a stage still starts, and times out at once)."""
        return max(0.0, self.at - asyncio.get_running_loop().time())


def normalize_query(query: str, casefold: bool) -> str:
    text = " ".join(unicodedata.normalize("NFKC", query).split())
    return text.casefold() if casefold else text


def _reorder(head: list[Candidate], tail: list[Candidate], scores: np.ndarray, plan: RerankPlan) -> list[Candidate]:
    """The head by the reranker's score (blended with retrieval's where alpha < 1, so a weak
    reranker cannot bury a good first stage), the tail as it was."""
    if plan.alpha < 1.0:
        scores = interpolate([c.retrieval_score for c in head], scores, plan.alpha)
    order = np.argsort(-np.asarray(scores), kind="stable")
    return [Candidate(head[i].row, head[i].retrieval_score, float(scores[i])) for i in order] + tail


@dataclass(frozen=True)
class Reranker:
    """A cross-encoder as served: its tokenizer at the plan's token budget and its Triton model,
    which reads every (query, document) pair whole."""

    plan: RerankPlan
    tokenizer: TextTokenizer
    models: TritonModels

    @property
    def scores_texts(self) -> bool:
        """Whether it can score any text (`POST /v1/rerank`): a cross-encoder always can."""
        return True

    async def score(self, query: str, texts: list[str], within_s: float | None = None) -> np.ndarray:
        """One logit per (query, text) pair, [len(texts)]: what search and `/v1/rerank` both rank by.
        Tokenised in a worker thread (pairs of long documents are CPU work); `within_s`: how long
        Triton may keep the pairs queued (`TritonModels`)."""
        tokens = await anyio.to_thread.run_sync(self.tokenizer.encode_pairs, query, texts)
        return await self.models.rerank(tokens, within_s)

    async def rerank(
        self, query: str, candidates: list[Candidate], index: DocumentIndex, within_s: float | None = None
    ) -> list[Candidate]:
        """The first `depth` candidates by the reranker's (blended) score, the rest as they were."""
        head, tail = candidates[: self.plan.depth], candidates[self.plan.depth :]
        texts = [index.documents[c.row].full_text for c in head]
        return _reorder(head, tail, await self.score(query, texts, within_s), self.plan)


@dataclass(frozen=True)
class LateInteractionReranker:
    """A late-interaction reranker as served: the query's token vectors from Triton, MaxSim
    against the documents' token vectors that `build` stored (no document text is read)."""

    plan: RerankPlan
    tokenizer: TextTokenizer  # the query side's, at the plan's query token budget
    models: TritonModels
    store: TokenStore
    # documents outside the store (`POST /v1/rerank`): the document tokenizer at the build's
    # document token budget, feeding Triton's `document_token_encoder`; None: a build from before it
    document_tokenizer: TextTokenizer | None = None

    @property
    def scores_texts(self) -> bool:
        """Whether it can score any text (`POST /v1/rerank`): only with the document side on Triton."""
        return self.document_tokenizer is not None

    async def _query_vectors(self, query: str, within_s: float | None = None) -> np.ndarray:
        tokens = self.tokenizer.encode([query])
        return (await self.models.encode_tokens(tokens, within_s))[0]  # [tokens, dim], zero at padding

    async def score(self, query: str, texts: list[str], within_s: float | None = None) -> np.ndarray:
        """MaxSim of each text, [len(texts)], its token vectors computed on Triton as `build`
        computed the store's (the query and the documents encoded concurrently); `within_s`: how
        long Triton may keep them queued."""
        if self.document_tokenizer is None:
            raise RuntimeError("this build has no document_token_encoder")
        tokens = await anyio.to_thread.run_sync(self.document_tokenizer.encode, texts)
        query_vectors, documents = await asyncio.gather(
            self._query_vectors(query, within_s), self.models.encode_documents(tokens, within_s)
        )
        lengths = [len(d) for d in documents]
        return await anyio.to_thread.run_sync(maxsim, query_vectors, np.concatenate(documents), lengths)

    async def rerank(
        self, query: str, candidates: list[Candidate], index: DocumentIndex, within_s: float | None = None
    ) -> list[Candidate]:
        head, tail = candidates[: self.plan.depth], candidates[self.plan.depth :]
        vectors = await self._query_vectors(query, within_s)
        scores = await anyio.to_thread.run_sync(self.store.maxsim, vectors, [c.row for c in head])
        return _reorder(head, tail, scores, self.plan)


class SearchPipeline:
    def __init__(
        self,
        plan: ServingPlan,
        index: DocumentIndex,
        models: TritonModels,
        encoder_tokenizer: TextTokenizer,
        reranker: Reranker | LateInteractionReranker | None,
        cache: SingleFlightCache[RankedCandidates],
        metrics: GatewayMetrics,
        personalization: Personalization | None = None,
        gate: AdmissionGate | None = None,
        deadline_ms: int = 2000,
    ) -> None:
        self.plan = plan
        self.index = index
        self.models = models
        self.encoder_tokenizer = encoder_tokenizer
        self.reranker = reranker
        self.cache = cache
        self.metrics = metrics
        self.personalization = personalization
        self.gate = gate
        self.deadline_ms = deadline_ms
        self._casefold = encoder_tokenizer.lowercases and (reranker is None or reranker.tokenizer.lowercases)

    def cache_key(self, request: SearchRequest, mode: RetrievalMode) -> str:
        """Everything the user-independent ranking depends on: the build's version, the first
        stage (with its fusion constant), candidates, and the reranker's blend and token budget."""
        rerank = self.reranker.plan if request.rerank and self.reranker is not None else None
        first = f"hybrid{self.plan.rrf_k}" if mode == "hybrid" else mode
        alpha = f"{rerank.alpha:g}" if rerank else "-"
        length = rerank.max_length if rerank else "-"
        query = normalize_query(request.query, self._casefold)
        return f"{self.plan.version_key}|f={first}|c={request.candidates}|r={int(rerank is not None)}|a={alpha}|L={length}|{query}"

    async def search(self, request: SearchRequest) -> SearchResult:
        """`UnsupportedRetrieval` for a first stage the build lacks; `Overloaded` when the
        admission gate has no room; `BackendUnavailable` when no ranking can be made (the query
        encoder down and no BM25 index). A failed or late reranker or profile store degrades the
        answer instead: it comes by the deadline, flagged with the reasons."""
        started = time.perf_counter()
        deadline = Deadline.after(request.timeout_ms if request.timeout_ms is not None else self.deadline_ms)
        request_id = uuid.uuid4().hex
        mode = self.plan.retrieval_for(request.retrieval)
        ranked, cached = await self.cache.get_or_compute(
            self.cache_key(request, mode), lambda: self._admitted(request, mode, deadline)
        )
        (self.metrics.cache_hits if cached else self.metrics.cache_misses).inc()
        timings = {name: 0.0 for name in ranked.timings_ms} if cached else dict(ranked.timings_ms)

        hits = [Hit(c.row, c.base_score, c.retrieval_score) for c in ranked.candidates]
        reasons, personalized = list(ranked.degraded_reasons), False
        if request.user_id and self.personalization is not None:
            t0 = time.perf_counter()
            personal = None
            inputs = personalization_inputs(ranked.candidates)
            try:
                personal = await asyncio.wait_for(self.personalization.personalize(
                    request.user_id,
                    inputs.rows,
                    inputs.primary,
                    inputs.retrieval,
                    request_id=request_id,
                    k=request.k,
                    query=request.query,
                    head=inputs.head,
                ), deadline.left_s())
            except BackendUnavailable as exc:  # profile store down: the non-personalised ranking
                reasons.append(self._degrade("personalization_unavailable", exc))
            except asyncio.TimeoutError:  # profile store late: the same, on time
                reasons.append(self._degrade("personalization_deadline", "past the deadline"))
            if personal is not None:
                hits = [Hit(hits[i].row, s, hits[i].retrieval_score) for i, s in zip(personal.order, personal.scores)]
                personalized = True
            timings["personalize"] = self._stage("personalize", t0)

        timings["total"] = self._stage("total", started)
        return SearchResult(
            request_id=request_id,
            hits=hits[: request.k],
            cached=cached,
            degraded_reasons=tuple(reasons),
            reranked=ranked.reranked,
            personalized=personalized,
            retrieval=ranked.retrieval,
            timings_ms=timings,
        )

    async def rank_uncached(self, request: SearchRequest) -> RankedCandidates:
        """What a cache miss computes, past neither the cache nor the admission gate: a live
        swap's canary queries must run the new version's models (a cached ranking proves
        nothing), and a few of them must not be refused by a gate full of user traffic."""
        deadline = Deadline.after(request.timeout_ms if request.timeout_ms is not None else self.deadline_ms)
        ranked, _ = await self._rank(request, self.plan.retrieval_for(request.retrieval), deadline)
        return ranked

    async def _admitted(
        self, request: SearchRequest, mode: RetrievalMode, deadline: Deadline
    ) -> tuple[RankedCandidates, bool]:
        """A cache miss's ranking, once the admission gate lets it in (`Overloaded` when the
        queue is full or no slot frees before the deadline): only misses wait, so hot queries
        answer from the cache under any reranking load."""
        async with admitted(self.gate, deadline.left_s()):
            return await self._rank(request, mode, deadline)

    async def _encode(self, query: str, deadline: Deadline) -> np.ndarray:
        tokens = self.encoder_tokenizer.encode([query])
        return (await asyncio.wait_for(self.models.encode(tokens, deadline.left_s()), deadline.left_s()))[0]

    async def _rank(
        self, request: SearchRequest, mode: RetrievalMode, deadline: Deadline
    ) -> tuple[RankedCandidates, bool]:
        """Encode, retrieve, rerank, each stage within what is left of the deadline. Returns
        (ranking, cacheable): degraded answers are not cached."""
        timings: dict[str, float] = {"encode": 0.0}
        reasons: list[str] = []
        n = request.candidates
        dense = lexical = None
        if mode != "bm25":  # BM25 alone needs no query vector
            t0 = time.perf_counter()
            try:
                embedding = await self._encode(request.query, deadline)
            except (BackendUnavailable, asyncio.TimeoutError) as exc:
                if not self.plan.has_lexical:  # no vector and no BM25 index: no search
                    if isinstance(exc, asyncio.TimeoutError):
                        raise BackendUnavailable("the query encoder did not answer before the deadline") from None
                    raise
                # Triton rejecting a request whose deadline passed in its queue is late, not down
                late = isinstance(exc, asyncio.TimeoutError) or deadline.left_s() == 0
                reasons.append(self._degrade("encoder_deadline" if late else "encoder_unavailable",
                                             "past the deadline" if late else exc))
                mode = "bm25"  # the build's BM25 index answers alone
            timings["encode"] = self._stage("encode", t0)
        t0 = time.perf_counter()  # `retrieve` covers the whole first stage, `lexical` the BM25 part of it
        if mode != "bm25":
            dense = self.index.search(embedding, n)
        if mode != "dense":
            t1 = time.perf_counter()
            # a sparse sum over the query's terms: CPU work, off the event loop like tokenisation
            lexical = await anyio.to_thread.run_sync(self.index.lexical_search, request.query, n)
            timings["lexical"] = self._stage("lexical", t1)
        if dense is not None and lexical is not None:
            rows, scores = fuse(dense, lexical, n, self.plan.rrf_k)
        else:
            rows, scores = dense if dense is not None else lexical  # type: ignore[misc]
        candidates = [Candidate(int(r), float(s), None) for r, s in zip(rows, scores)]
        timings["retrieve"] = self._stage("retrieve", t0)

        reranked = False
        timings["rerank"] = 0.0
        if request.rerank and self.reranker is not None and candidates:
            t0 = time.perf_counter()
            try:
                # past the deadline the rerank is cancelled: its Triton calls with it, and Triton
                # rejects, uncomputed, those it still holds queued (TritonModels, `within_s`)
                candidates = await asyncio.wait_for(
                    self.reranker.rerank(request.query, candidates, self.index, deadline.left_s()),
                    deadline.left_s(),
                )
                reranked = True
            except BackendUnavailable as exc:
                late = deadline.left_s() == 0  # rejected by Triton's queue at the deadline
                reasons.append(self._degrade("rerank_deadline" if late else "reranker_unavailable", exc))
            except asyncio.TimeoutError:
                reasons.append(self._degrade("rerank_deadline", "cancelled at the deadline"))
            timings["rerank"] = self._stage("rerank", t0)
        ranked = RankedCandidates(tuple(candidates), reranked, tuple(reasons), mode, timings)
        return ranked, not reasons

    def _degrade(self, reason: str, why: object) -> str:
        """Count and log a skipped stage; the answer carries `reason`."""
        log.warning("search degraded (%s): %s", reason, why)
        self.metrics.degraded.labels(reason=reason).inc()
        return reason

    def _stage(self, stage: str, started: float) -> float:
        seconds = time.perf_counter() - started
        self.metrics.observe_stage(stage, seconds)
        return seconds * 1000
