"""`ranking-gateway build`: corpus → ONNX → compiled models → Triton repository → FAISS + BM25 indexes.

Everything is written into a staging directory beside the target and renamed into place at
the end, so a failed build leaves nothing half-written and an existing build untouched.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import faiss
import numpy as np
from torch import nn

from ranking_gateway.core.corpus import Document, read_corpus, write_documents
from ranking_build.indexing import build_faiss_index
from ranking_build.cuda_model import check_cuda_model
from ranking_build.model_repository import write_cpu_model, write_tensorrt_model
from ranking_build.onnx_export import OPSET, ExportResult, export_onnx, quantize_int8
from ranking_build.tensorrt_engine import (
    TRITON_IMAGE,
    TRITON_SERVER_VERSION,
    EngineProfile,
    build_engine,
    check_engine,
    engine_info,
    tensorrt_unavailable_reason,
    to_fp16,
)
from ranking_gateway.core.artifacts import (
    ArtifactPaths,
    LexicalEntry,
    Manifest,
    ModelEntry,
    TokenStoreEntry,
    Toolchain,
    sha256_of,
)
from ranking_gateway.core.reranker_dir import reranker_kind
from ranking_gateway.core.token_store import store_sha256, write_token_store
from ranking_gateway.core.config import BuildSettings, PythonRuntime, Target, TritonModelSettings
from ranking_gateway.core.contract import DOCUMENT_TOKENS, ENCODER, QUERY_TOKENS, RERANKER, ModelContract
from ranking_gateway.core.errors import CliError
from ranking_gateway.core.lexical import STEMMER, STOPWORDS, LexicalIndex
from ranking_gateway.serving.tokenization import TextTokenizer
from ranking_build.models import (
    CrossEncoder,
    SentenceEncoder,
    default_encoder_path,
    encode_texts,
    fastest_cpu_runtime,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """How one Triton model is exported and compiled."""

    contract: ModelContract
    max_length: int
    serving: TritonModelSettings


@dataclass(frozen=True)
class CheckInputs:
    """Real texts a TensorRT engine is checked on, tokenised by the gateway's own `TextTokenizer`
    from the tokenizer the build saved for the model: the engine is checked on what it will get."""

    texts: list[str]
    query: str | None = None  # a cross-encoder's: (query, text) pairs

    def feeds(self, paths: ArtifactPaths, contract: ModelContract, max_length: int) -> dict[str, np.ndarray]:
        tokenizer = TextTokenizer(paths.tokenizer(contract.name), max_length)
        batch = tokenizer.encode_pairs(self.query, self.texts) if self.query is not None else tokenizer.encode(self.texts)
        return {name: getattr(batch, name) for name in contract.inputs}


def _load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def _check_model_dir(path: Path, what: str) -> Path:
    if not (path / "config.json").is_file():
        raise CliError(f"{what} {path} is not a Hugging Face model directory (no config.json)")
    return path


def build_toolchain(target: Target) -> Toolchain:
    """What this build exports and compiles with: the manifest records it, and the Triton that
    loads the model repository must agree with it."""
    import onnx
    import onnxruntime
    import torch

    tensorrt = None
    if target == "tensorrt":
        import tensorrt as trt

        tensorrt = str(trt.__version__)
    return Toolchain(
        onnx_opset=OPSET,
        torch=str(torch.__version__),
        onnx=str(onnx.__version__),
        onnxruntime=str(onnxruntime.__version__),
        tensorrt=tensorrt,
        triton_server=TRITON_SERVER_VERSION if tensorrt else None,
        triton_image=TRITON_IMAGE if tensorrt else None,
    )


def compile_model(
    module: nn.Module, spec: ModelSpec, settings: BuildSettings, paths: ArtifactPaths, dim: int,
    toolchain: Toolchain, check: CheckInputs | None = None,
) -> ExportResult:
    """Export `module` to ONNX, then compile it for the target into the model repository. The
    TensorRT target builds from the graph in fp16 and checks the engine on `check`'s real inputs
    against ONNX Runtime on the fp32 graph."""
    name = spec.contract.name
    exported = export_onnx(module, spec.contract, paths.onnx_dir / f"{name}.onnx")
    repo = paths.model_repository
    if settings.target == "tensorrt":
        if check is None:
            raise ValueError("the TensorRT target checks every engine: pass real inputs")
        profile = EngineProfile(
            max_batch=spec.serving.max_batch_size,
            opt_batch=max(spec.serving.preferred_batch_sizes),
            max_length=spec.max_length,
            opt_length=min(spec.max_length, 128),
        )
        half = to_fp16(exported.path, paths.onnx_dir / f"{name}.fp16.onnx")
        plan = build_engine(half, paths.onnx_dir / f"{name}.plan", spec.contract.inputs, profile)
        diff = check_engine(plan, exported.path, check.feeds(paths, spec.contract, spec.max_length), spec.contract.output)
        write_tensorrt_model(repo, spec.contract, spec.serving, plan, dim)
        plan.unlink()
        return replace(exported, engine=asdict(engine_info(profile, diff)))
    runtime: PythonRuntime = "torch_cuda_fp16" if settings.target == "cuda" else settings.cpu_runtime  # type: ignore[assignment]
    int8 = None
    if runtime == "onnx_int8":
        int8 = quantize_int8(exported.path, paths.onnx_dir / f"{name}.int8.onnx")
    assert toolchain.onnxruntime is not None
    version = write_cpu_model(
        repo, spec.contract, spec.serving, runtime, exported.path, int8, dim, toolchain.onnxruntime, settings.target
    )
    if runtime.startswith("torch"):
        module.transformer.save_pretrained(str(version / "hf"))
        projection = getattr(module, "projection", None)  # the late-interaction query side's
        if projection is not None:
            np.save(version / "hf" / "projection.npy", projection.weight.detach().float().numpy())
    if settings.target == "cuda":
        feeds = check.feeds(paths, spec.contract, spec.max_length) if check is not None else None
        return replace(exported, engine=check_cuda_model(version, spec.contract, exported.path, feeds))
    return exported


def recommended_alpha(model_dir: Path) -> float | None:
    """The blend weight `train-reranker` chose on its held-out queries (training_report.json), if any."""
    import json

    try:
        value = json.loads((model_dir / "training_report.json").read_text()).get("recommended_rerank_alpha")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and 0.0 <= value <= 1.0 else None


def _model_entry(source: Path, exported: ExportResult, max_length: int, dim: int) -> ModelEntry:
    return ModelEntry(
        source=str(source),
        sha256=sha256_of(source),
        onnx_sha256=sha256_of(exported.path),
        max_length=max_length,
        onnx_max_abs_diff=exported.max_abs_diff,
        output_dim=dim,
        engine=exported.engine,
    )


def _queries(docs: list[Document], n: int = 8) -> list[str]:
    """Query-like texts from the corpus (its titles, else its first words): what the TensorRT
    engines of the query-side models are checked on."""
    return [d.title or " ".join(d.text.split()[:12]) for d in docs[:n]]


def _build_bm25(docs: list[Document], paths: ArtifactPaths) -> LexicalEntry:
    """Always built: seconds even for large corpora, and it lets `serve --retrieval hybrid|bm25`
    run on any fresh build (rows are the FAISS rows)."""
    lexical = LexicalIndex.build([d.full_text for d in docs], stemmer=STEMMER)
    lexical.save(paths.bm25_index)
    r = lexical.retriever
    print(f"bm25: {lexical.vocabulary} terms")
    return LexicalEntry(
        path=str(paths.bm25_index.relative_to(paths.root)),
        method=str(r.method),
        k1=float(r.k1),
        b=float(r.b),
        stopwords=STOPWORDS,
        vocabulary=lexical.vocabulary,
        stemmer=lexical.stemmer,
    )


def _build_late_interaction(
    reranker_dir: Path, docs: list[Document], settings: BuildSettings, paths: ArtifactPaths, toolchain: Toolchain
) -> tuple[ModelEntry, TokenStoreEntry, ModelEntry]:
    """The late-interaction reranker: its query side compiled as the Triton model
    `query_token_encoder`, its document side run over the corpus into the token store and
    compiled too, as `document_token_encoder`, for documents outside the corpus (`/v1/rerank`)."""
    import time

    from ranking_build.late_interaction import document_encoder_dir, encode_document_tokens, load_late_interaction

    config, query, document = load_late_interaction(reranker_dir)  # CliError on a bad directory
    _load_tokenizer(reranker_dir).save_pretrained(str(paths.tokenizer(QUERY_TOKENS.name)))
    spec = ModelSpec(QUERY_TOKENS, config.query_max_length, settings.encoder_serving)
    exported = compile_model(query, spec, settings, paths, config.dim, toolchain, CheckInputs(_queries(docs)))
    entry = _model_entry(reranker_dir, exported, config.query_max_length, config.dim)
    entry.recommended_alpha = recommended_alpha(reranker_dir)
    entry.kind = "late-interaction"

    started = time.perf_counter()
    doc_dir = document_encoder_dir(reranker_dir, config)
    doc_tokenizer = _load_tokenizer(doc_dir)
    vectors = encode_document_tokens(
        document, doc_tokenizer, [d.full_text for d in docs],
        max_length=config.document_max_length, progress="document token store",
    )
    counts = write_token_store(paths.token_store, vectors, config.dim)
    store = TokenStoreEntry(
        path=str(paths.token_store.relative_to(paths.root)),
        sha256=store_sha256(paths.token_store),
        dim=config.dim,
        dtype="int8",
        documents=counts["documents"],
        tokens=counts["tokens"],
        bytes=counts["bytes"],
        bytes_per_document=round(counts["bytes"] / max(1, counts["documents"]), 1),
        document_max_length=config.document_max_length,
        document_encoder=str(doc_dir),
        document_encoder_sha256=sha256_of(doc_dir / "model.safetensors"),
        build_seconds=round(time.perf_counter() - started, 1),
    )
    print(f"token store: {store.tokens} token vectors, {store.bytes / 1e6:.1f} MB "
          f"({store.bytes_per_document:.0f} B per document), {store.build_seconds:.0f} s")

    # the same module that filled the store, served: request-time documents score as stored ones
    doc_tokenizer.save_pretrained(str(paths.tokenizer(DOCUMENT_TOKENS.name)))
    doc_spec = ModelSpec(DOCUMENT_TOKENS, config.document_max_length, settings.reranker_settings())
    doc_check = CheckInputs([d.full_text for d in docs[:8]])
    doc_export = compile_model(document, doc_spec, settings, paths, config.dim, toolchain, doc_check)
    doc_entry = _model_entry(doc_dir, doc_export, config.document_max_length, config.dim)
    doc_entry.kind = "late-interaction"
    return entry, store, doc_entry


def _build_into(settings: BuildSettings, paths: ArtifactPaths) -> Manifest:
    docs = read_corpus(settings.corpus)  # validate before any heavy work
    print(f"corpus: {len(docs)} documents from {settings.corpus}")
    encoder_dir = _check_model_dir(settings.encoder or default_encoder_path(), "--encoder")
    reranker_dir = settings.reranker
    kind = reranker_kind(reranker_dir) if reranker_dir is not None else None  # CliError when neither kind
    if settings.target == "tensorrt" and (reason := tensorrt_unavailable_reason()):
        raise CliError(f"--target tensorrt: {reason}")
    toolchain = build_toolchain(settings.target)

    encoder = SentenceEncoder(encoder_dir)
    encoder_tokenizer = _load_tokenizer(encoder_dir)
    encoder_tokenizer.save_pretrained(str(paths.tokenizer(ENCODER.name)))
    encoder_spec = ModelSpec(ENCODER, settings.query_max_length, settings.encoder_serving)
    encoder_export = compile_model(
        encoder, encoder_spec, settings, paths, encoder.dim, toolchain, CheckInputs(_queries(docs))
    )

    reranker_entry = token_store = document_entry = None
    if reranker_dir is not None and kind == "late-interaction":
        reranker_entry, token_store, document_entry = _build_late_interaction(
            reranker_dir, docs, settings, paths, toolchain
        )
    elif reranker_dir is not None:
        reranker = CrossEncoder(reranker_dir)
        _load_tokenizer(reranker_dir).save_pretrained(str(paths.tokenizer(RERANKER.name)))
        reranker_spec = ModelSpec(RERANKER, settings.max_length, settings.reranker_settings())
        pairs = CheckInputs([d.full_text for d in docs[:8]], query=_queries(docs, 1)[0])
        reranker_export = compile_model(reranker, reranker_spec, settings, paths, 1, toolchain, pairs)
        reranker_entry = _model_entry(reranker_dir, reranker_export, settings.max_length, 1)
        reranker_entry.recommended_alpha = recommended_alpha(reranker_dir)
        del reranker

    embeddings = encode_texts(
        encoder,
        encoder_tokenizer,
        [d.full_text for d in docs],
        max_length=settings.document_max_length,
        batch_size=settings.embed_batch_size,
        progress="embedding corpus",
    )
    index = build_faiss_index(embeddings, settings.index_type, settings.hnsw_m)
    paths.index_dir.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(paths.faiss_index))
    np.save(paths.embeddings, embeddings)
    write_documents(docs, paths.documents)
    bm25 = _build_bm25(docs, paths)  # before index_version is hashed: it is part of the index

    manifest = Manifest(
        target=settings.target,
        cpu_runtime=settings.cpu_runtime if settings.target == "cpu" else None,
        corpus=str(settings.corpus),
        documents=len(docs),
        embedding_dim=encoder.dim,
        index_type=settings.index_type,
        index_version=sha256_of(paths.index_dir)[:16],
        encoder=_model_entry(encoder_dir, encoder_export, settings.query_max_length, encoder.dim),
        reranker=reranker_entry,
        bm25=bm25,
        token_store=token_store,
        document_token_encoder=document_entry,
        toolchain=toolchain,
    )
    manifest.write(paths.root)
    return manifest


def publish(final: Path, fill: Callable[[ArtifactPaths], Manifest]) -> Manifest:
    """`fill` a staging directory beside `final`, then rename it into place: a failed build
    leaves nothing half-written, and an existing build stays whole until the rename."""
    staging = final.parent / f".{final.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        manifest = fill(ArtifactPaths(staging))
        if final.exists():
            previous = final.parent / f".{final.name}.previous-{os.getpid()}"
            final.rename(previous)
            staging.rename(final)
            shutil.rmtree(previous)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def run_build(settings: BuildSettings) -> Manifest:
    if settings.cpu_runtime == "auto":
        late = settings.reranker is not None and reranker_kind(settings.reranker) == "late-interaction"
        settings = replace(settings, cpu_runtime=fastest_cpu_runtime(cross_encoder=not late))
    final = settings.artifacts.resolve()
    manifest = publish(final, lambda paths: _build_into(settings, paths))
    print(f"built {final}: {manifest.documents} documents, target {manifest.target}, index {manifest.index_type}")
    return manifest
