"""`train-reranker` beyond qrels: a bare corpus (inverse cloze) and the gateway's own click log,
and a trained directory going through `build` and `serve` with the alpha its training chose."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ranking_gateway.core.corpus import Document
from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.collection import write_collection
from ranking_gateway.core.config import BuildSettings, GatewaySettings, PersonalizationSettings
from ranking_build.models import CrossEncoder
from ranking_gateway.personalization.jsonl_log import read_records
from tests.conftest import CORPUS, SLOW_CI_DEADLINE_MS, gateway_client, serve_process
from tests.training.test_train_tiny import make_collection

ABSTRACTS = {
    "statins": "Statins lower LDL cholesterol in most adults. The effect held across twelve randomised trials. "
    "Muscle pain was the most common adverse event reported.",
    "vitamin-d": "Vitamin D supplements were given to elderly people for three years. Fracture rates did not fall "
    "in the treated group. Falls were recorded by the study nurses every month.",
    "sleep": "Sleep deprivation impairs the consolidation of new memories. Students slept four hours before the "
    "test in one arm. Their recall of word lists dropped by a third.",
    "malaria": "Bed nets treated with insecticide reduce malaria infections in children. Villages received nets in "
    "a staggered rollout. Infection rates fell most where coverage was highest.",
    "smoking": "Smoking cessation lowers the risk of lung cancer within ten years. Former smokers were followed for "
    "two decades. Risk approached that of never smokers after fifteen years.",
}


def train(*argv: str) -> dict:
    from ranking_gateway.training.command import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-reranker", *argv])
    assert args.handler(args) == 0
    return json.loads((args.out / "training_report.json").read_text())


@pytest.mark.slow
def test_corpus_source_trains_a_reranker_from_documents_alone(tmp_path: Path) -> None:
    coll = tmp_path / "corpus-only"
    coll.mkdir()
    docs = [Document(k, f"Study of {k} outcomes", v) for k, v in ABSTRACTS.items()]
    write_collection(coll, docs, {}, {})  # no queries, no qrels: nothing labelled
    report = train(
        "--collection", str(coll), "--source", "corpus", "--queries-per-doc", "3", "--miner", "bm25",
        "--negatives", "2", "--epochs", "2", "--batch-queries", "5", "--max-length", "64", "--out", str(tmp_path / "m"),
    )
    # 3 pseudo-queries per document; those sharing no term with another document have no BM25 negative
    assert report["source"] == "corpus" and report["train_queries"] == 15 and 10 <= report["examples"] <= 15
    assert report["heldout_queries"] == 0 and report["recommended_rerank_alpha"] is None
    assert len(report["step_losses"]) == 6
    CrossEncoder(tmp_path / "m")  # loadable as `build --reranker` loads it


@pytest.mark.anyio
async def test_events_source_trains_from_the_gateways_own_click_log(
    artifacts: ArtifactPaths, triton, tmp_path: Path
) -> None:
    settings = GatewaySettings(
        artifacts=artifacts.root, personalization=PersonalizationSettings(event_log=tmp_path / "ev"),
        deadline_ms=SLOW_CI_DEADLINE_MS,
    )
    clicked = []
    async with gateway_client(settings, triton.grpc_url) as client:
        for user, query in [("ann", "how do volcanoes erupt"), ("bob", "why is the sky blue"), ("cy", "deep sea animals")]:
            body = (await client.post("/v1/search", json={"query": query, "k": 5, "user_id": user})).json()
            doc = body["results"][2]["id"]  # a click below two skipped results
            r = await client.post("/v1/events", json={"user_id": user, "doc_id": doc, "type": "click",
                                                      "request_id": body["request_id"], "position": 3})
            assert r.status_code == 202
            clicked.append((query, doc, [x["id"] for x in body["results"]]))
        await client.app.state.gateway.personalization.event_log.flush()
    impressions = [r for r in read_records(tmp_path / "ev") if r["kind"] == "impression"]
    assert sorted(r["query"] for r in impressions) == sorted(q for q, _, _ in clicked)

    from ranking_gateway.personalization.command import load_records
    from ranking_gateway.training.clicks import click_pairs

    pairs = click_pairs(load_records(str(tmp_path / "ev")))
    assert sorted((p.query, p.clicked_id, list(p.shown_ids)) for p in pairs) == sorted(clicked)
    report = train(
        "--collection", str(CORPUS.parent), "--source", "events", "--events", str(tmp_path / "ev"), "--miner", "bm25",
        "--negatives", "3", "--epochs", "1", "--max-length", "64", "--out", str(tmp_path / "m"),
    )
    assert report["source"] == "events" and report["examples"] == report["train_queries"] == 3


def test_events_flag_goes_with_the_events_source(tmp_path: Path) -> None:
    from ranking_gateway.core.errors import CliError

    with pytest.raises(CliError, match="--events"):
        train("--collection", str(CORPUS.parent), "--source", "events", "--out", str(tmp_path / "m"))


def test_a_trained_reranker_builds_and_serves_with_its_recommended_alpha(tmp_path: Path) -> None:
    from ranking_build.pipeline import run_build

    coll = make_collection(tmp_path / "c")
    report = train(
        "--collection", str(coll), "--out", str(tmp_path / "m"), "--epochs", "1", "--max-length", "64",
        "--negatives", "3", "--mine-depth", "5", "--eval-candidates", "8", "--heldout-fraction", "0.25",
        "--batch-queries", "3", "--lr", "2e-4", "--bf16", "off",
    )
    alpha = report["recommended_rerank_alpha"]
    sweep = heldout_ndcg_by_alpha(coll, tmp_path / "m", report["config"]["alphas"])
    epoch = report["epochs"][0]
    assert {a: epoch[f"alpha={a:g}_ndcg@10"] for a in sweep} == pytest.approx(sweep)
    assert alpha == max(sweep, key=lambda a: (sweep[a], a)) and epoch["best_ndcg@10"] == pytest.approx(sweep[alpha])

    root = tmp_path / "artifacts"
    run_build(BuildSettings(corpus=coll / "corpus.jsonl", artifacts=root, reranker=tmp_path / "m", max_length=64))
    assert Manifest.read(root).reranker.recommended_alpha == alpha
    with serve_process(ArtifactPaths(root), tmp_path / "serve.log", ready="/readyz") as client:
        ready = client.get("/readyz").json()
        assert ready["rerank"] == {"alpha": alpha, "depth": 30, "max_length": 64, "kind": "cross-encoder"}
        body = client.post("/v1/search", json={"query": "why do volcanoes erupt", "k": 3}).json()
        assert body["reranked"] and not body["degraded"] and len(body["results"]) == 3


def heldout_ndcg_by_alpha(root: Path, model_dir: Path, alphas: list[float]) -> dict[float, float]:
    """The held-out NDCG@10 of each blend weight, recomputed by hand from the saved model: the
    held-out 25 % of the queries (seed 13), their 8 dense candidates (the whole collection), the
    pair logits, the z-scored blend with the cosines, binary gains, ties by doc id descending."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ranking_gateway.core.collection import load_collection
    from ranking_gateway.training.examples import split_heldout
    from ranking_gateway.training.mining import mine_candidates

    coll = load_collection(root, "train")
    _, held = split_heldout(sorted(coll.queries), 0.25, seed=13)
    mined = mine_candidates("dense", coll.documents, {q: coll.queries[q] for q in held}, 8)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / x.std() if x.std() > 1e-9 else np.zeros_like(x)

    ndcg: dict[float, list[float]] = {float(a): [] for a in alphas}
    for qid in held:
        docs = [coll.doc_by_id[d] for d, _ in mined[qid]]
        cosines = np.array([s for _, s in mined[qid]])
        enc = tokenizer([coll.queries[qid]] * len(docs), [d.full_text for d in docs], padding=True,
                        truncation="longest_first", max_length=64, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[:, 0].double().numpy()
        for a in ndcg:
            blend = a * z(logits) + (1 - a) * z(cosines)
            ranked = [docs[i].id for i in sorted(range(len(docs)), key=lambda i: (blend[i], docs[i].id), reverse=True)]
            relevant = {d for d, g in coll.qrels[qid].items() if g > 0}
            dcg = sum(1 / math.log2(rank + 2) for rank, d in enumerate(ranked[:10]) if d in relevant)
            ndcg[a].append(dcg / sum(1 / math.log2(i + 2) for i in range(min(len(relevant), 10))))
    return {a: float(np.mean(v)) for a, v in ndcg.items()}
