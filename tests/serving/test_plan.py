"""The serving plan: flags and manifest resolved once, refusals as one-line errors. Fast: a
written manifest is all it reads."""

from pathlib import Path

import pytest

from ranking_gateway.core.artifacts import LexicalEntry, Manifest, ManifestError, ModelEntry
from ranking_gateway.core.config import GatewaySettings
from ranking_gateway.serving.plan import PlanError, UnsupportedRetrieval, resolve


def model(max_length: int, alpha: float | None = None) -> ModelEntry:
    return ModelEntry("src", "a" * 64, "b" * 64, max_length, 0.0, 1, recommended_alpha=alpha)


def write_manifest(root: Path, *, reranker: ModelEntry | None, bm25: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lexical = LexicalEntry("index/bm25", "lucene", 1.5, 0.75, "en", 10) if bm25 else None
    Manifest("cpu", "onnx_int8", "c.jsonl", 3, 4, "flat", "v1", model(64), reranker, bm25=lexical).write(root)
    return root


def test_defaults_come_from_the_build(tmp_path: Path) -> None:
    root = write_manifest(tmp_path / "a", reranker=model(256, alpha=0.4), bm25=True)
    plan = resolve(GatewaySettings(artifacts=root))
    assert plan.retrieval == "hybrid" and plan.rerank is not None
    assert (plan.rerank.alpha, plan.rerank.max_length, plan.rerank.depth) == (0.4, 256, 30)
    assert plan.event_log == root.resolve().with_name("a-events")
    assert plan.describe()["rerank"] == {"alpha": 0.4, "depth": 30, "max_length": 256, "kind": "cross-encoder"}


def test_flags_override_the_build(tmp_path: Path) -> None:
    root = write_manifest(tmp_path / "a", reranker=model(256, alpha=0.4), bm25=True)
    plan = resolve(GatewaySettings(artifacts=root, rerank_alpha=1.0, rerank_max_length=128, retrieval="dense"))
    assert plan.retrieval == "dense" and plan.rerank is not None
    assert (plan.rerank.alpha, plan.rerank.max_length) == (1.0, 128)
    assert plan.retrieval_for(None) == "dense" and plan.retrieval_for("bm25") == "bm25"


def test_without_bm25_only_dense(tmp_path: Path) -> None:
    plan = resolve(GatewaySettings(artifacts=write_manifest(tmp_path / "a", reranker=None, bm25=False)))
    assert plan.retrieval == "dense" and plan.rerank is None and plan.describe()["rerank"] is None
    with pytest.raises(UnsupportedRetrieval, match="BM25"):
        plan.retrieval_for("hybrid")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"retrieval": "bm25"}, "--retrieval"),
        ({"rerank_max_length": 512}, "--rerank-max-length"),
        ({"rerank_max_length": 8}, "--rerank-max-length"),
        ({"rerank_alpha": 1.5}, "--rerank-alpha"),
        ({"rerank_depth": 0}, "--rerank-depth"),
        ({"rerank_chunk_size": 0}, "--rerank-chunk-size"),
    ],
)
def test_refusals_are_one_line_plan_errors(tmp_path: Path, overrides: dict, message: str) -> None:
    root = write_manifest(tmp_path / "a", reranker=model(256), bm25=False)
    with pytest.raises(PlanError, match=message) as info:
        resolve(GatewaySettings(artifacts=root, **overrides))
    assert "\n" not in str(info.value)


def test_length_flag_without_a_reranker_is_refused(tmp_path: Path) -> None:
    root = write_manifest(tmp_path / "a", reranker=None, bm25=True)
    with pytest.raises(PlanError, match="without a reranker"):
        resolve(GatewaySettings(artifacts=root, rerank_max_length=64))


def test_no_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="ranking-gateway build"):
        resolve(GatewaySettings(artifacts=tmp_path))


def test_a_chunk_bigger_than_the_builds_reranker_takes_is_refused(tmp_path: Path) -> None:
    """Triton refuses a request over the model's max_batch_size: every rerank would degrade."""
    root = write_manifest(tmp_path / "a", reranker=model(256), bm25=True)
    config = root / "model_repository" / "reranker" / "config.pbtxt"
    config.parent.mkdir(parents=True)
    config.write_text('name: "reranker"\nbackend: "python"\nmax_batch_size: 32\n')
    assert resolve(GatewaySettings(artifacts=root, rerank_chunk_size=32)).rerank is not None
    with pytest.raises(PlanError, match="--rerank-chunk-size 64 is more than reranker's max_batch_size 32") as info:
        resolve(GatewaySettings(artifacts=root, rerank_chunk_size=64))
    assert "\n" not in str(info.value)
