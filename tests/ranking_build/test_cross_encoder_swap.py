"""`rebuild_cross_encoder`: new artifacts that share the served build's index and query encoder
and differ in the cross-encoder only; refused on a late-interaction build."""

import pytest

from ranking_build.cross_encoder_swap import rebuild_cross_encoder
from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.errors import CliError

pytestmark = pytest.mark.slow


def _retrained(reranker, out):
    """A copy of `reranker` with other weights (its classifier's bias moved), as `learn` saves one."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(reranker))
    model.classifier.bias.data += 1.0
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(reranker)).save_pretrained(str(out))
    return out


def test_a_new_cross_encoder_shares_the_index_and_changes_the_version(artifacts, untrained_reranker, tmp_path):
    out = tmp_path / "new"
    manifest = rebuild_cross_encoder(artifacts.root, _retrained(untrained_reranker, tmp_path / "candidate"), out)
    old = Manifest.read(artifacts.root)
    assert manifest.index_version == old.index_version and manifest.encoder == old.encoder
    assert manifest.reranker.max_length == old.reranker.max_length and manifest.reranker.kind == "cross-encoder"
    assert manifest.version_key != old.version_key  # a new reranker entry: every cache key changes
    new = ArtifactPaths(out)
    assert new.faiss_index.stat().st_ino == artifacts.faiss_index.stat().st_ino  # linked, not copied
    encoder = "model_repository/query_encoder/config.pbtxt"
    assert (out / encoder).stat().st_ino == (artifacts.root / encoder).stat().st_ino
    assert (new.model_repository / "reranker" / "config.pbtxt").is_file()
    assert not (artifacts.onnx_dir / "reranker.onnx").samefile(new.onnx_dir / "reranker.onnx")


def test_a_late_interaction_build_is_refused(late_artifacts, untrained_reranker, tmp_path):
    with pytest.raises(CliError, match="not a cross-encoder build"):
        rebuild_cross_encoder(late_artifacts.root, untrained_reranker, tmp_path / "new")
    assert not (tmp_path / "new").exists()
