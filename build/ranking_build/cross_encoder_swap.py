"""New artifacts that differ from a build only in its cross-encoder reranker.

`learn` fine-tunes the served cross-encoder on clicks. A cross-encoder reads each (query,
document) pair whole, so nothing about the corpus was computed with it at build time: the new
version is the serving build's index, documents and query encoder (hard links) with the
`reranker` Triton model, its ONNX graph and tokenizer exported and compiled anew for the build's
target, and the manifest's reranker entry (so the version key, and every cache key) new. The
gateway swaps to it like to any build (`deploy --artifacts`).
"""

from __future__ import annotations

from pathlib import Path

from ranking_build.model_swap import rebuild_one_model
from ranking_gateway.core.artifacts import ArtifactPaths, Manifest, ModelEntry, Toolchain
from ranking_gateway.core.config import BuildSettings
from ranking_gateway.core.contract import RERANKER
from ranking_gateway.core.corpus import read_corpus
from ranking_gateway.core.errors import CliError


def rebuild_cross_encoder(serving: Path, reranker_dir: Path, out: Path) -> Manifest:
    """Artifacts in `out`: `serving`'s (a cross-encoder build), with `reranker_dir`'s model at
    the served token budget and blend."""
    from ranking_build.models import CrossEncoder
    from ranking_build.pipeline import CheckInputs, ModelSpec, _load_tokenizer, _model_entry, _queries, compile_model

    old = Manifest.read(serving)
    if old.reranker is None or old.reranker.kind == "late-interaction":
        raise CliError(f"{serving}: not a cross-encoder build; only a cross-encoder can be swapped this way")
    settings = BuildSettings(corpus=Path(old.corpus), artifacts=out, reranker=reranker_dir, target=old.target,
                             cpu_runtime=old.cpu_runtime or "onnx_fp32", max_length=old.reranker.max_length)

    def export(paths: ArtifactPaths, toolchain: Toolchain) -> ModelEntry:
        _load_tokenizer(reranker_dir).save_pretrained(str(paths.tokenizer(RERANKER.name)))
        docs = read_corpus(ArtifactPaths(serving).documents)[:8]
        spec = ModelSpec(RERANKER, settings.max_length, settings.reranker_settings())
        pairs = CheckInputs([d.full_text for d in docs], query=_queries(docs, 1)[0])
        exported = compile_model(CrossEncoder(reranker_dir), spec, settings, paths, 1, toolchain, pairs)
        entry = _model_entry(reranker_dir, exported, settings.max_length, 1)
        entry.recommended_alpha = old.reranker.recommended_alpha
        return entry

    return rebuild_one_model(serving, out, RERANKER.name, export)
