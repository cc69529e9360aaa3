"""New artifacts that differ from a build only in the late-interaction reranker's query side.

`learn` retrains the query encoder and its projection and keeps the document side (whose output
is the token store, the build's expensive part) byte for byte. A full `build` would recompute
the store, the embeddings and the indexes to get the same bytes back; this writes a new
artifacts directory whose index, documents and token store are hard links to the serving
build's (copies across file systems), with the `query_token_encoder` Triton model, its ONNX
graph and tokenizer re-exported and the manifest's reranker entry (and so the version key, and
every cache key) new. The gateway swaps to it like to any build (`deploy --artifacts`).
"""

from __future__ import annotations

from pathlib import Path

from ranking_build.model_swap import rebuild_one_model
from ranking_gateway.core.artifacts import ArtifactPaths, Manifest, ModelEntry, Toolchain
from ranking_gateway.core.config import BuildSettings
from ranking_gateway.core.contract import QUERY_TOKENS
from ranking_gateway.core.corpus import read_corpus
from ranking_gateway.core.errors import CliError
from ranking_gateway.core.reranker_dir import PROJECTIONS_FILE, read_late_interaction


def same_document_projection(a: Path, b: Path) -> bool:
    """Whether two late-interaction reranker directories put documents in the same space."""
    from safetensors.torch import load_file

    return bool((load_file(str(a / PROJECTIONS_FILE))["document"] == load_file(str(b / PROJECTIONS_FILE))["document"]).all())


def rebuild_query_side(serving: Path, reranker_dir: Path, out: Path, document_reference: Path | None = None) -> Manifest:
    """Artifacts in `out`: `serving`'s, with `reranker_dir`'s query side. `reranker_dir` must
    share the document side of the reranker that filled `serving`'s token store: its document
    projection is compared with `document_reference`'s (default: the manifest's reranker source)."""
    from ranking_build.late_interaction import load_query_side
    from ranking_build.pipeline import CheckInputs, ModelSpec, _load_tokenizer, _model_entry, _queries, compile_model

    old = Manifest.read(serving)
    if old.reranker is None or old.reranker.kind != "late-interaction" or old.token_store is None:
        raise CliError(f"{serving}: not a late-interaction build; only its query side can be swapped this way")
    reference = Path(document_reference or old.reranker.source)
    if not (reference / PROJECTIONS_FILE).is_file():
        raise CliError(f"{reference}: the reranker that filled the token store is not readable here; give its directory")
    config = read_late_interaction(reranker_dir)
    if config != read_late_interaction(reference) or not same_document_projection(reranker_dir, reference):
        raise CliError(f"{reranker_dir}: its document side differs from the one in {serving}'s token store; run a full build")
    settings = BuildSettings(corpus=Path(old.corpus), artifacts=out, reranker=reranker_dir, target=old.target,
                             cpu_runtime=old.cpu_runtime or "onnx_fp32")

    def export(paths: ArtifactPaths, toolchain: Toolchain) -> ModelEntry:
        _, query = load_query_side(reranker_dir)
        _load_tokenizer(reranker_dir).save_pretrained(str(paths.tokenizer(QUERY_TOKENS.name)))
        spec = ModelSpec(QUERY_TOKENS, config.query_max_length, settings.encoder_serving)
        docs = read_corpus(ArtifactPaths(serving).documents)[:8]
        exported = compile_model(query, spec, settings, paths, config.dim, toolchain, CheckInputs(_queries(docs)))
        entry = _model_entry(reranker_dir, exported, config.query_max_length, config.dim)
        entry.kind, entry.recommended_alpha = "late-interaction", old.reranker.recommended_alpha
        return entry

    return rebuild_one_model(serving, out, QUERY_TOKENS.name, export)
