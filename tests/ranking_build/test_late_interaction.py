"""A late-interaction reranker through the real build (session fixture `late_artifacts`): the
query side exported and checked, the document side stored, the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.config import BuildSettings
from ranking_gateway.core.contract import DOCUMENT_TOKENS, QUERY_TOKENS, RERANKER
from ranking_gateway.core.corpus import read_corpus
from ranking_gateway.core.errors import CliError
from ranking_gateway.core.reranker_dir import LATE_INTERACTION_FILE, reranker_kind
from ranking_gateway.core.token_store import TokenStore

CORPUS = Path(__file__).parents[1] / "data" / "corpus.jsonl"


def test_the_directory_says_its_kind(late_reranker: Path, untrained_reranker: Path, tmp_path: Path) -> None:
    assert reranker_kind(late_reranker) == "late-interaction"
    assert reranker_kind(untrained_reranker) == "cross-encoder"
    with pytest.raises(CliError, match="neither a cross-encoder"):
        reranker_kind(tmp_path)


def test_build_compiles_the_query_side_and_stores_the_documents(late_artifacts: ArtifactPaths) -> None:
    manifest = Manifest.read(late_artifacts.root)
    assert manifest.reranker is not None and manifest.reranker.kind == "late-interaction"
    assert manifest.reranker.max_length == 24 and manifest.reranker.output_dim == 32
    assert manifest.reranker.onnx_max_abs_diff < 1e-3
    assert (late_artifacts.model_repository / QUERY_TOKENS.name / "config.pbtxt").is_file()
    assert not (late_artifacts.model_repository / RERANKER.name).exists()
    config = (late_artifacts.model_repository / QUERY_TOKENS.name / "config.pbtxt").read_text()
    assert "dims: [ -1, 32 ]" in config
    store = manifest.token_store
    assert store is not None and store.documents == manifest.documents == 30 and store.dim == 32
    assert store.tokens > 30 and store.bytes > store.tokens * 32 and store.bytes_per_document > 0


def test_stored_scores_equal_the_pytorch_reranker(late_reranker: Path, late_artifacts: ArtifactPaths) -> None:
    """MaxSim over the int8 store, with query vectors from the exported ONNX model, ranks the
    corpus as the fp32 PyTorch reranker does, within quantisation error."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from ranking_build.late_interaction import load_late_interaction
    from ranking_gateway.training.late_interaction import maxsim

    manifest = Manifest.read(late_artifacts.root)
    config, query_side, document_side = load_late_interaction(late_reranker)
    docs = read_corpus(CORPUS)
    tokenizer = AutoTokenizer.from_pretrained(str(late_reranker))
    query = "how do stars form from gas clouds"
    enc = tokenizer([query], truncation=True, max_length=config.query_max_length, return_tensors="pt")
    session = ort.InferenceSession(str(late_artifacts.onnx_dir / f"{QUERY_TOKENS.name}.onnx"))
    onnx_query = session.run(None, {k: enc[k].numpy() for k in QUERY_TOKENS.inputs})[0][0]
    with torch.inference_mode():
        torch_query = query_side(enc["input_ids"], enc["attention_mask"])[0]
        d_enc = tokenizer([d.full_text for d in docs], padding=True, truncation=True,
                          max_length=config.document_max_length, return_tensors="pt")
        expected = maxsim(torch_query, document_side(d_enc["input_ids"], d_enc["attention_mask"]),
                          d_enc["attention_mask"].float()).numpy()
    np.testing.assert_allclose(onnx_query, torch_query.numpy(), atol=1e-4)
    store = TokenStore.open(late_artifacts.root / manifest.token_store.path, documents=30, dim=32)
    got = store.maxsim(onnx_query, range(30))
    np.testing.assert_allclose(got, expected, atol=0.05 * config.query_max_length / 10)
    assert np.argmax(got) == np.argmax(expected)


def test_build_serves_the_document_side_as_the_store_computed_it(late_artifacts: ArtifactPaths, tmp_path: Path) -> None:
    """`document_token_encoder` (the served model.py over the exported ONNX, fed by the saved
    document tokenizer as the gateway tokenises) gives each corpus document the vectors in its
    token store, within int8 rounding: `/v1/rerank` then scores a document as search does."""
    from ranking_build.model_repository import load_cpu_model
    from ranking_gateway.serving.tokenization import TextTokenizer

    manifest = Manifest.read(late_artifacts.root)
    entry = manifest.document_token_encoder
    assert entry is not None and (entry.max_length, entry.output_dim) == (96, 32) and entry.onnx_max_abs_diff < 1e-3
    config = (late_artifacts.model_repository / DOCUMENT_TOKENS.name / "config.pbtxt").read_text()
    assert f'name: "{DOCUMENT_TOKENS.name}"' in config and "dims: [ -1, 32 ]" in config
    version = late_artifacts.model_repository / DOCUMENT_TOKENS.name / "1"
    model = load_cpu_model(version, DOCUMENT_TOKENS, "onnx_fp32")
    tokenizer = TextTokenizer(late_artifacts.tokenizer(DOCUMENT_TOKENS.name), entry.max_length)
    store = TokenStore.open(late_artifacts.root / manifest.token_store.path, documents=30, dim=32)
    docs = read_corpus(CORPUS)
    rows = [0, 7, 29]
    batch = tokenizer.encode([docs[r].full_text for r in rows])
    served = model.run({name: getattr(batch, name) for name in DOCUMENT_TOKENS.inputs})
    for i, row in enumerate(rows):
        n = int(batch.attention_mask[i].sum())
        stored = store.document(row)
        assert n == len(stored)  # the same tokens: the gateway's tokenizer is the build's
        np.testing.assert_allclose(served[i, :n], stored, atol=6e-3)  # int8: half a step of peak/127
        assert not served[i, n:].any()  # zero at padding


@pytest.mark.parametrize("contract", [QUERY_TOKENS, DOCUMENT_TOKENS], ids=lambda c: c.name)
def test_torch_runtime_of_the_token_encoders_matches_their_onnx_export(
    late_reranker: Path, late_artifacts: ArtifactPaths, tmp_path: Path, contract
) -> None:
    """Both sides' model.py (cpu_runtime's token-vector model) under torch compute what was
    exported to ONNX: what `--cpu-runtime torch_*` builds serve."""
    from ranking_build.late_interaction import load_late_interaction
    from ranking_build.model_repository import copy_model_code, load_cpu_model

    version = tmp_path / contract.name / "1"
    version.mkdir(parents=True)
    copy_model_code(contract, version)
    shutil.copy2(late_artifacts.onnx_dir / f"{contract.name}.onnx", version / "model.onnx")
    _, query, document = load_late_interaction(late_reranker)
    module = query if contract is QUERY_TOKENS else document
    module.transformer.save_pretrained(str(version / "hf"))  # as `build --cpu-runtime torch_*` writes them
    np.save(version / "hf" / "projection.npy", module.projection.weight.detach().float().numpy())
    mask = np.ones((3, 40), dtype=np.int64)
    mask[1, 11:] = 0
    inputs = {"input_ids": np.random.default_rng(0).integers(1000, 20000, mask.shape) * mask, "attention_mask": mask}
    torch_out = load_cpu_model(version, contract, "torch_fp32").run(inputs)
    onnx_out = load_cpu_model(version, contract, "onnx_fp32").run(inputs)
    assert torch_out.shape == onnx_out.shape == (3, 40, 32) and not torch_out[1, 11:].any()
    np.testing.assert_allclose(torch_out, onnx_out, atol=1e-4)


def test_a_wrong_dimension_is_refused(late_reranker: Path, tmp_path: Path) -> None:
    from ranking_build.pipeline import run_build

    broken = tmp_path / "reranker"
    shutil.copytree(late_reranker, broken)
    config = json.loads((broken / LATE_INTERACTION_FILE).read_text())
    (broken / LATE_INTERACTION_FILE).write_text(json.dumps({**config, "dim": 64}))
    with pytest.raises(CliError, match="config says dim 64"):
        run_build(BuildSettings(corpus=CORPUS, artifacts=tmp_path / "a", reranker=broken))
    assert not (tmp_path / "a").exists()


def test_another_document_encoder_is_refused(late_reranker: Path, tmp_path: Path) -> None:
    """The store is only right with the exact document weights the projection was trained on."""
    from ranking_build.pipeline import run_build

    broken = tmp_path / "reranker"
    shutil.copytree(late_reranker, broken)
    config = json.loads((broken / LATE_INTERACTION_FILE).read_text())
    (broken / LATE_INTERACTION_FILE).write_text(json.dumps({**config, "document_encoder_sha256": "0" * 64}))
    with pytest.raises(CliError, match="not the one this reranker was trained with"):
        run_build(BuildSettings(corpus=CORPUS, artifacts=tmp_path / "a", reranker=broken))


@pytest.mark.parametrize("missing", ["model.safetensors", "projections.safetensors"])
def test_a_reranker_without_its_weights_is_refused(late_reranker: Path, tmp_path: Path, missing: str) -> None:
    """A directory whose weights were left behind (say, ignored by git) stops the build, not serves noise."""
    from ranking_build.pipeline import run_build

    broken = tmp_path / "reranker"
    shutil.copytree(late_reranker, broken)
    (broken / missing).unlink()
    with pytest.raises(CliError, match="without"):
        run_build(BuildSettings(corpus=CORPUS, artifacts=tmp_path / "a", reranker=broken))
    assert not (tmp_path / "a").exists()


def test_a_directory_of_neither_kind_is_refused(tmp_path: Path) -> None:
    from ranking_build.pipeline import run_build

    (tmp_path / "empty").mkdir()
    with pytest.raises(CliError, match="neither a cross-encoder"):
        run_build(BuildSettings(corpus=CORPUS, artifacts=tmp_path / "a", reranker=tmp_path / "empty"))
