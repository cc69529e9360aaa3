"""The serving plan: the manifest and the flags resolved once, before anything starts.

Every "which one?" of serving is answered here, in one place: the default first stage, the
reranker's blend weight (flag, else what training recommended, else 1), depth and token
budget, where events are logged. The pipeline, `/readyz` and the cache key read the plan; none
of them re-derives a setting. A plan that the build cannot serve is a one-line `PlanError`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.config import GatewaySettings, RetrievalMode
from ranking_gateway.core.contract import DOCUMENT_TOKENS, ENCODER, QUERY_TOKENS, RERANKER
from ranking_gateway.core.errors import CliError
from ranking_gateway.core.first_stage import resolve_retrieval

MIN_RERANK_LENGTH = 16


class PlanError(CliError):
    """The flags ask for something these artifacts cannot serve."""


class UnsupportedRetrieval(ValueError):
    """A request asks for a first stage the build has no index for (a 422, not a fault)."""


@dataclass(frozen=True)
class RerankPlan:
    """How the reranker is served: what an operator comparing two gateways needs to see."""

    alpha: float  # 1: rank by the logit; < 1: alpha*z(logit) + (1-alpha)*z(retrieval score)
    depth: int  # candidates reranked at most
    # tokens the reranker's Triton model reads, at most the build's: per (query, document) pair
    # for a cross-encoder, per query for late interaction (its documents are in the token store)
    max_length: int
    kind: str = "cross-encoder"  # or "late-interaction" (core.reranker_dir)


@dataclass(frozen=True)
class ServingPlan:
    paths: ArtifactPaths
    manifest: Manifest
    retrieval: RetrievalMode  # the first stage of requests that do not name one
    has_lexical: bool
    rrf_k: int
    rerank: RerankPlan | None  # None: built without a reranker
    event_log: Path  # the JSON-lines log directory (unused with a Redis event stream)

    @property
    def version_key(self) -> str:
        return self.manifest.version_key

    @property
    def triton_models(self) -> list[str]:
        """The Triton models this plan calls: the query encoder, and the reranker's (a late
        build's document side too, for `/v1/rerank`, unless built before it)."""
        if self.rerank is None:
            return [ENCODER.name]
        if self.rerank.kind != "late-interaction":
            return [ENCODER.name, RERANKER.name]
        late = [ENCODER.name, QUERY_TOKENS.name]
        return late + ([DOCUMENT_TOKENS.name] if self.manifest.document_token_encoder is not None else [])

    def retrieval_for(self, requested: RetrievalMode | None) -> RetrievalMode:
        """A request's first stage: its own, else the plan's; `UnsupportedRetrieval` for a BM25
        mode on a build without a BM25 index."""
        if requested is None:
            return self.retrieval
        try:
            return resolve_retrieval(requested, self.has_lexical)
        except ValueError as exc:
            raise UnsupportedRetrieval(f"'retrieval': {exc}") from None

    def describe(self) -> dict:
        """The plan as `/readyz` reports it."""
        return {
            "version": self.version_key,
            "retrieval": self.retrieval,
            "rerank": asdict(self.rerank) if self.rerank else None,
        }


def _rerank_plan(settings: GatewaySettings, manifest: Manifest) -> RerankPlan | None:
    reranker = manifest.reranker
    if reranker is None:
        if settings.rerank_max_length is not None:
            raise PlanError("--rerank-max-length: these artifacts were built without a reranker")
        return None
    alpha = settings.rerank_alpha
    if alpha is None:
        alpha = reranker.recommended_alpha if reranker.recommended_alpha is not None else 1.0
    if not 0.0 <= alpha <= 1.0:
        raise PlanError("--rerank-alpha must be between 0 and 1")
    if settings.rerank_depth < 1:
        raise PlanError("--rerank-depth must be at least 1")
    built = reranker.max_length
    length = built if settings.rerank_max_length is None else settings.rerank_max_length
    if not MIN_RERANK_LENGTH <= length <= built:
        raise PlanError(
            f"--rerank-max-length must be between {MIN_RERANK_LENGTH} and the build's reranker max length "
            f"{built}, got {length} (the compiled model covers no longer pairs: rebuild with a larger --max-length)"
        )
    return RerankPlan(alpha=alpha, depth=settings.rerank_depth, max_length=length, kind=reranker.kind)


def _check_token_store(paths: ArtifactPaths, manifest: Manifest) -> None:
    """A late-interaction build serves only with its own token store, intact: checked (hash
    included) before anything starts, so a corrupt or missing store is a start-up error."""
    if manifest.reranker is None or manifest.reranker.kind != "late-interaction":
        return
    entry = manifest.token_store
    if entry is None:
        raise PlanError("the manifest has a late-interaction reranker but no token store: rebuild the artifacts")
    from ranking_gateway.core.token_store import TokenStore

    TokenStore.open(paths.root / entry.path, documents=manifest.documents, dim=entry.dim, sha256=entry.sha256)


def _check_chunk_size(chunk_size: int, paths: ArtifactPaths, manifest: Manifest) -> None:
    """`--rerank-chunk-size` within what the build's reranker-side models take in one request
    (their config's `max_batch_size`, 32 on CPUs): Triton refuses a bigger request, and every
    rerank would degrade."""
    if chunk_size < 1:
        raise PlanError(f"--rerank-chunk-size must be at least 1, got {chunk_size}")
    names = []
    if manifest.reranker is not None and manifest.reranker.kind != "late-interaction":
        names.append(RERANKER.name)
    if manifest.document_token_encoder is not None:
        names.append(DOCUMENT_TOKENS.name)
    for name in names:
        limit = max_batch_size(paths.model_repository / name / "config.pbtxt")
        if limit is not None and chunk_size > limit:
            raise PlanError(
                f"--rerank-chunk-size {chunk_size} is more than {name}'s max_batch_size {limit} in this build: "
                f"use at most {limit}, or rebuild with a larger one"
            )


def max_batch_size(config: Path) -> int | None:
    """A Triton config.pbtxt's `max_batch_size`, or None where it is not there to read."""
    try:
        found = re.search(r"^max_batch_size:\s*(\d+)", config.read_text(), re.M)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _event_log_dir(settings: GatewaySettings) -> Path:
    """`--event-log`, else `<artifacts>-events/` beside the artifacts: a rebuild replaces the
    artifacts directory, and the log must outlive it."""
    if settings.personalization.event_log is not None:
        return settings.personalization.event_log
    artifacts = settings.artifacts.resolve()
    return artifacts.with_name(artifacts.name + "-events")


def _check_personalization(settings: GatewaySettings) -> None:
    ps = settings.personalization
    if not ps.half_life_s > 0:
        raise PlanError("--profile-half-life must be positive")
    if not ps.event_log_max_bytes > 0:
        raise PlanError("--event-log-max-mb must be positive")
    if ps.weights is not None:
        from ranking_gateway.personalization.scorer import PersonalScorer

        try:
            PersonalScorer.load(ps.weights)
        except (OSError, ValueError) as exc:
            raise PlanError(f"--personalizer-weights {ps.weights}: {exc}") from None


def resolve(settings: GatewaySettings) -> ServingPlan:
    """Read the manifest and check the flags against it: the plan, or a one-line `PlanError`."""
    paths = ArtifactPaths(settings.artifacts)
    manifest = Manifest.read(paths.root)  # ManifestError (one line) when missing, corrupt or of an unknown format
    has_lexical = manifest.bm25 is not None
    try:
        retrieval = resolve_retrieval(settings.retrieval, has_lexical)
    except ValueError as exc:
        raise PlanError(f"--retrieval: {exc}") from None
    _check_personalization(settings)
    _check_token_store(paths, manifest)  # TokenStoreError (one line) when missing, corrupt or not this build's
    _check_chunk_size(settings.rerank_chunk_size, paths, manifest)
    return ServingPlan(
        paths=paths,
        manifest=manifest,
        retrieval=retrieval,
        has_lexical=has_lexical,
        rrf_k=settings.rrf_k,
        rerank=_rerank_plan(settings, manifest),
        event_log=_event_log_dir(settings),
    )
