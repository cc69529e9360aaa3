"""The manifest: what build writes, and what an older build wrote still reads."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from ranking_gateway.core.artifacts import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    ArtifactPaths,
    LexicalEntry,
    Manifest,
    ManifestError,
    ModelEntry,
    Toolchain,
    sha256_of,
)
from ranking_gateway.core.errors import CliError


def test_manifest_records_the_bm25_index(artifacts: ArtifactPaths) -> None:
    manifest = Manifest.read(artifacts.root)
    assert manifest.bm25 is not None
    assert artifacts.root / manifest.bm25.path == artifacts.bm25_index
    assert (manifest.bm25.stopwords, manifest.bm25.k1, manifest.bm25.b) == ("en", 1.5, 0.75)
    assert manifest.bm25.stemmer == "english"  # what the served index is queried with
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


def test_the_bm25_stemmer_round_trips_and_is_optional(tmp_path: Path) -> None:
    """Manifests from before stemming have no `stemmer`: they still read (format 1), as unstemmed."""
    entry = LexicalEntry("index/bm25", "lucene", 1.5, 0.75, "en", 10, stemmer="english")
    for stemmer in ("english", None):
        manifest = _manifest(bm25=LexicalEntry(**{**asdict(entry), "stemmer": stemmer}))
        manifest.write(tmp_path)
        assert json.loads((tmp_path / MANIFEST_FILE).read_text())["bm25"]["stemmer"] == stemmer
        assert Manifest.read(tmp_path) == manifest
    data = json.loads((tmp_path / MANIFEST_FILE).read_text())
    data["bm25"] = {k: v for k, v in asdict(entry).items() if k != "stemmer"}
    assert data["format_version"] == FORMAT_VERSION == 1
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    read = Manifest.read(tmp_path).bm25
    assert read is not None and read.stemmer is None and read.vocabulary == 10


def test_the_toolchain_round_trips_and_is_optional(tmp_path: Path) -> None:
    """What the build ran with (checked against Triton at start-up); manifests from before it still read."""
    tools = Toolchain(onnx_opset=17, torch="2.13.0", onnx="1.17.0", onnxruntime="1.20.1", tensorrt="10.5.0",
                      triton_server="2.51.0", triton_image="nvcr.io/nvidia/tritonserver:24.10-py3")
    manifest = _manifest(toolchain=tools)
    manifest.write(tmp_path)
    assert Manifest.read(tmp_path) == manifest and Manifest.read(tmp_path).toolchain == tools
    assert manifest.version_key == _manifest().version_key  # same models, same cache
    data = json.loads((tmp_path / MANIFEST_FILE).read_text())
    del data["toolchain"]
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    assert Manifest.read(tmp_path).toolchain is None


def _manifest(**changes) -> Manifest:
    model = ModelEntry(
        source="m", sha256="a" * 64, onnx_sha256="b" * 64, max_length=64, onnx_max_abs_diff=0.0, output_dim=8
    )
    fields = dict(
        target="cpu", cpu_runtime="onnx_int8", corpus="c.jsonl", documents=3, embedding_dim=8, index_type="flat",
        index_version="0" * 16, encoder=model, reranker=None, created_unix=0.0,
    )
    return Manifest(**{**fields, **changes})


@pytest.mark.parametrize(
    "changes",
    [{"cpu_runtime": "onnx_fp32"}, {"cpu_runtime": "torch_bf16"}, {"target": "tensorrt"}, {"format_version": 2}],
)
def test_version_key_covers_how_the_models_were_compiled(changes: dict) -> None:
    assert _manifest(**changes).version_key != _manifest().version_key
    assert _manifest(created_unix=1.0).version_key == _manifest().version_key  # not every field


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / MANIFEST_FILE).write_text(text)
    return tmp_path


def _refusal(directory: Path) -> str:
    with pytest.raises(ManifestError) as info:
        Manifest.read(directory)
    assert isinstance(info.value, CliError)  # the CLI prints it as one line, no traceback
    message = str(info.value)
    assert "\n" not in message and "ranking-gateway build" in message
    return message


def test_an_unknown_format_version_is_refused(tmp_path: Path) -> None:
    data = asdict(_manifest())
    data["format_version"] = FORMAT_VERSION + 1
    assert f"format_version {FORMAT_VERSION + 1}" in _refusal(_write(tmp_path, json.dumps(data)))
    del data["format_version"]
    assert "format_version None" in _refusal(_write(tmp_path, json.dumps(data)))


@pytest.mark.parametrize("text", [None, "{not json", "[]", '{"format_version": 1}'])
def test_a_missing_or_corrupt_manifest_is_refused(tmp_path: Path, text: str | None) -> None:
    if text is not None:
        _write(tmp_path, text)
    _refusal(tmp_path)
