"""One served version: everything a request reads that a live swap replaces at once.

The plan, the loaded index, the tokenizers, the reranker (and its token store), the search
pipeline and rerank service over them, the Triton name map and the personalisation view of that
index. `serve` loads the first one and a live swap (`serving.deploy`) the next ones with this same
code, so a swapped-in version is exactly what a restart on those artifacts would serve.

A request takes `gateway.current` once and keeps that version to its end (`in_use` counts it),
so the swap is one reference assignment and a request never mixes two versions (a ranking of one
index rendered with another's documents); the old version is drained by that count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ranking_gateway.core.config import GatewaySettings
from ranking_gateway.core.contract import DOCUMENT_TOKENS, ENCODER, QUERY_TOKENS, RERANKER
from ranking_gateway.core.token_store import TokenStore
from ranking_gateway.personalization.service import Personalization, scorer_for
from ranking_gateway.serving.admission import AdmissionGate
from ranking_gateway.serving.cache import SingleFlightCache
from ranking_gateway.serving.index import DocumentIndex
from ranking_gateway.serving.metrics import GatewayMetrics
from ranking_gateway.serving.plan import ServingPlan
from ranking_gateway.serving.rerank_api import RerankService
from ranking_gateway.serving.search import LateInteractionReranker, RankedCandidates, Reranker, SearchPipeline
from ranking_gateway.serving.tokenization import TextTokenizer
from ranking_gateway.serving.triton_client import TritonModels


@dataclass
class Shared:
    """What every version shares: one gRPC channel, one admission gate (one bound on the work),
    one hot-query cache (its keys carry the version), one metrics registry."""

    models: TritonModels  # the channel's owner (identity names); versions get `renamed` views
    cache: SingleFlightCache[RankedCandidates]
    gate: AdmissionGate
    metrics: GatewayMetrics


@dataclass
class ServingVersion:
    plan: ServingPlan
    index: DocumentIndex
    models: TritonModels  # this version's view: its Triton model names
    search: SearchPipeline
    rerank: RerankService
    personalization: Personalization
    personalizer_weights: Path | None
    inflight: int = field(default=0, init=False)

    @property
    def artifacts(self) -> Path:
        return self.plan.paths.root

    @property
    def model_names(self) -> list[str]:
        """The contract names of the Triton models this version calls."""
        return self.plan.triton_models

    @property
    def triton_names(self) -> list[str]:
        return [self.models.triton_name(name) for name in self.model_names]

    def describe(self) -> dict:
        return {"artifacts": str(self.artifacts), "version": self.plan.version_key,
                "personalizer_weights": None if self.personalizer_weights is None else str(self.personalizer_weights)}

    @contextlib.contextmanager
    def in_use(self) -> Iterator[ServingVersion]:
        """Count a request on this version for as long as it runs (the swap's drain waits for 0)."""
        self.inflight += 1
        try:
            yield self
        finally:
            self.inflight -= 1

    @classmethod
    def load(
        cls,
        plan: ServingPlan,
        settings: GatewaySettings,
        shared: Shared,
        names: dict[str, str] | None,
        personalization: Callable[[DocumentIndex], Personalization],
    ) -> ServingVersion:
        """Load the plan's index, tokenizers and reranker (blocking: call it from a worker thread
        once the gateway serves). `personalization` makes the personalisation over the loaded
        index: opened at start-up; at a swap, the serving one re-bound (`rebind`)."""
        paths = plan.paths
        index = DocumentIndex(paths, plan.manifest)
        models = shared.models.renamed(names or {})
        encoder_tokenizer = TextTokenizer(paths.tokenizer(ENCODER.name), plan.manifest.encoder.max_length)
        reranker = _reranker(plan, models)
        personal = personalization(index)
        search = SearchPipeline(
            plan, index, models, encoder_tokenizer, reranker, shared.cache, shared.metrics, personal,
            shared.gate, settings.deadline_ms,
        )
        rerank = RerankService(reranker, shared.metrics, shared.gate, settings.deadline_ms)
        return cls(plan, index, models, search, rerank, personal, settings.personalization.weights)


def rebind(personalization: Personalization, index: DocumentIndex, settings: GatewaySettings) -> Personalization:
    """The same profiles and event log, over `index`'s rows and with `settings`' scorer weights:
    profiles hold the clicked documents' embeddings, so they outlive a change of corpus."""
    return Personalization(
        embeddings=index.embeddings,
        doc_ids=[d.id for d in index.documents],
        store=personalization.store,
        event_log=personalization.event_log,
        scorer=scorer_for(settings.personalization),
        log_impressions=personalization.log_impressions,
    )


def _reranker_model(plan: ServingPlan) -> str:
    assert plan.rerank is not None
    return QUERY_TOKENS.name if plan.rerank.kind == "late-interaction" else RERANKER.name


def _reranker(plan: ServingPlan, models: TritonModels) -> Reranker | LateInteractionReranker | None:
    """The plan's reranker: a cross-encoder, or late interaction over the build's token store
    (already checked by `plan.resolve`, so opened here without re-hashing)."""
    if plan.rerank is None:
        return None
    name = _reranker_model(plan)
    tokenizer = TextTokenizer(plan.paths.tokenizer(name), plan.rerank.max_length)
    if plan.rerank.kind != "late-interaction":
        return Reranker(plan.rerank, tokenizer, models)
    entry = plan.manifest.token_store
    assert entry is not None
    store = TokenStore.open(plan.paths.root / entry.path, documents=plan.manifest.documents, dim=entry.dim)
    documents = plan.manifest.document_token_encoder  # None: a build from before `/v1/rerank`
    document_tokenizer = (
        TextTokenizer(plan.paths.tokenizer(DOCUMENT_TOKENS.name), documents.max_length) if documents else None
    )
    return LateInteractionReranker(plan.rerank, tokenizer, models, store, document_tokenizer)
