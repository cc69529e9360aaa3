"""The manifest: what build writes, and what an older build wrote still reads."""

import json

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest, sha256_of


def test_manifest_records_the_bm25_index(artifacts: ArtifactPaths) -> None:
    manifest = Manifest.read(artifacts.root)
    assert manifest.bm25 is not None
    assert artifacts.root / manifest.bm25.path == artifacts.bm25_index
    assert (manifest.bm25.stopwords, manifest.bm25.k1, manifest.bm25.b) == ("en", 1.5, 0.75)
    # the index version hashes index/, so it covers the BM25 files too
    assert artifacts.bm25_index.parent == artifacts.index_dir
    assert manifest.index_version == sha256_of(artifacts.index_dir)[:16]


def test_a_manifest_without_bm25_still_reads(legacy_artifacts: ArtifactPaths) -> None:
    assert "bm25" not in json.loads(legacy_artifacts.manifest.read_text())
    manifest = Manifest.read(legacy_artifacts.root)
    assert manifest.bm25 is None and manifest.reranker is not None


def test_round_trip(artifacts: ArtifactPaths, tmp_path) -> None:
    manifest = Manifest.read(artifacts.root)
    manifest.write(tmp_path)
    assert Manifest.read(tmp_path) == manifest
