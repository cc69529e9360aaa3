"""The real build of the small test corpus (session fixture `artifacts`)."""

import json
import re

import faiss
import numpy as np

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_build.models import fastest_cpu_runtime
from ranking_gateway.core.contract import ENCODER, RERANKER


def test_artifacts_layout(artifacts: ArtifactPaths) -> None:
    for path in (artifacts.faiss_index, artifacts.embeddings, artifacts.documents, artifacts.manifest):
        assert path.is_file(), path
    for model in (ENCODER.name, RERANKER.name):
        assert (artifacts.model_repository / model / "config.pbtxt").is_file()
        assert (artifacts.model_repository / model / "1" / "model.py").is_file()
        assert (artifacts.onnx_dir / f"{model}.onnx").is_file()
        assert (artifacts.tokenizer(model) / "tokenizer.json").is_file()
    assert not list(artifacts.root.parent.glob(".*staging*"))


def test_manifest_records_models_and_index(artifacts: ArtifactPaths) -> None:
    manifest = Manifest.read(artifacts.root)
    assert manifest.documents == 30 and manifest.embedding_dim == 384
    assert manifest.target == "cpu" and manifest.cpu_runtime == fastest_cpu_runtime()
    assert manifest.reranker is not None and manifest.reranker.max_length == 128
    assert manifest.encoder.onnx_max_abs_diff < 1e-3 and manifest.reranker.onnx_max_abs_diff < 1e-3
    assert re.fullmatch(r"[0-9a-f]{64}", manifest.encoder.sha256)
    assert len(manifest.version_key) == 16


def test_configs_batch_dynamically(artifacts: ArtifactPaths) -> None:
    for model in (ENCODER.name, RERANKER.name):
        config = (artifacts.model_repository / model / "config.pbtxt").read_text()
        assert "$" not in config
        assert re.search(r"max_batch_size: \d+", config)
        assert re.search(r"dynamic_batching \{\s*preferred_batch_size: \[ \d+(, \d+)* \]\s*max_queue_delay_microseconds: \d+", config)
        assert re.search(r"instance_group \[ \{ count: \d+ kind: KIND_CPU \} \]", config)


def test_index_finds_each_document_by_its_own_embedding(artifacts: ArtifactPaths) -> None:
    index = faiss.read_index(str(artifacts.faiss_index))
    embeddings = np.load(artifacts.embeddings)
    assert index.ntotal == embeddings.shape[0] == 30
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)
    _, rows = index.search(embeddings, 1)
    assert (rows[:, 0] == np.arange(30)).all()
    ids = [json.loads(line)["_id"] for line in artifacts.documents.read_text().splitlines()]
    assert ids[0] == "astronomy-0" and len(set(ids)) == 30


def test_build_writes_a_bm25_index_over_the_same_rows(artifacts: ArtifactPaths) -> None:
    from ranking_gateway.core.lexical import LexicalIndex

    assert (artifacts.bm25_index / "params.index.json").is_file()
    lexical = LexicalIndex.load(artifacts.bm25_index, stemmer=Manifest.read(artifacts.root).bm25.stemmer)
    ids = [json.loads(line)["_id"] for line in artifacts.documents.read_text().splitlines()]
    rows, _ = lexical.search("Phobos", 3)
    assert len(lexical) == 30 and [ids[r] for r in rows] == ["astronomy-2"]
    assert Manifest.read(artifacts.root).bm25 is not None
