"""`rebuild_query_side`: new artifacts that share the served build's index and token store and
differ in the late-interaction query side only; refused where the token store would be wrong."""

import shutil

import pytest
from safetensors.torch import load_file, save_file

from ranking_build.query_side import rebuild_query_side
from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.errors import CliError
from ranking_gateway.core.reranker_dir import PROJECTIONS_FILE

pytestmark = pytest.mark.slow


def _copy_with(reranker, out, side: str, scale: float):
    shutil.copytree(reranker, out)
    weights = load_file(str(out / PROJECTIONS_FILE))
    weights[side] = (weights[side].float() * scale).half()
    save_file(weights, str(out / PROJECTIONS_FILE))
    return out


def test_a_new_query_side_shares_the_store_and_changes_the_version(late_artifacts, late_reranker, tmp_path):
    candidate = _copy_with(late_reranker, tmp_path / "candidate", "query", 1.5)
    out = tmp_path / "new"
    manifest = rebuild_query_side(late_artifacts.root, candidate, out, document_reference=late_reranker)
    old = Manifest.read(late_artifacts.root)
    assert manifest.token_store == old.token_store and manifest.index_version == old.index_version
    assert manifest.reranker.source == str(candidate) and manifest.reranker.sha256 != old.reranker.sha256
    assert manifest.reranker.recommended_alpha == old.reranker.recommended_alpha
    assert manifest.version_key != old.version_key  # every cache key changes with it
    new_paths = ArtifactPaths(out)
    vectors = new_paths.token_store / "vectors.npy"
    assert vectors.stat().st_ino == (late_artifacts.token_store / "vectors.npy").stat().st_ino  # linked, not copied
    assert (new_paths.model_repository / "query_token_encoder" / "config.pbtxt").is_file()
    assert not (late_artifacts.onnx_dir / "query_token_encoder.onnx").samefile(new_paths.onnx_dir / "query_token_encoder.onnx")


def test_another_document_side_is_refused(late_artifacts, late_reranker, tmp_path):
    candidate = _copy_with(late_reranker, tmp_path / "candidate", "document", 1.5)
    with pytest.raises(CliError, match="document side differs"):
        rebuild_query_side(late_artifacts.root, candidate, tmp_path / "new", document_reference=late_reranker)
    assert not (tmp_path / "new").exists()


def test_a_cross_encoder_build_is_refused(artifacts, late_reranker, tmp_path):
    with pytest.raises(CliError, match="not a late-interaction build"):
        rebuild_query_side(artifacts.root, late_reranker, tmp_path / "new")
