"""Training on a tiny synthetic collection runs end to end, lowers the loss, and saves the best
epoch's weights as a loadable reranker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ranking_gateway.core.corpus import Document
from ranking_gateway.core.collection import load_collection, write_collection
from ranking_build.models import CrossEncoder

TOPICS = {
    "volcano": "Volcanoes erupt molten lava and ash when magma pressure builds beneath the crust.",
    "bread": "Bread dough rises because yeast ferments sugars and releases carbon dioxide gas.",
    "orbit": "Planets orbit the sun along elliptical paths described by Kepler's laws.",
    "vaccine": "Vaccines train the immune system to recognise a pathogen before infection.",
    "glacier": "Glaciers carve valleys as compacted snow slowly flows downhill under gravity.",
    "piano": "A piano produces sound when felt hammers strike tensioned steel strings.",
    "coral": "Coral reefs are built by colonies of tiny animals secreting calcium carbonate.",
    "battery": "Lithium batteries store energy by moving ions between electrodes during charging.",
}
QUERIES = {
    "volcano": "why do volcanoes erupt",
    "bread": "how does yeast make bread rise",
    "orbit": "what shape are planetary orbits",
    "vaccine": "how do vaccines protect people",
    "glacier": "how are glacial valleys formed",
    "piano": "how does a piano make sound",
    "coral": "what builds coral reefs",
    "battery": "how do lithium batteries store energy",
}


def make_collection(root: Path) -> Path:
    docs = [Document(id=k, title=k.title(), text=v) for k, v in TOPICS.items()]
    queries = {f"q-{k}": v for k, v in QUERIES.items()}
    qrels = {f"q-{k}": {k: 1} for k in TOPICS}
    write_collection(root, docs, queries, {"train": qrels})
    return root


def test_collection_round_trip(tmp_path: Path) -> None:
    coll = load_collection(make_collection(tmp_path / "c"), "train")
    assert len(coll.documents) == 8 and coll.qrels["q-bread"] == {"bread": 1}
    assert coll.queries["q-orbit"] == QUERIES["orbit"]


@pytest.mark.slow
def test_listwise_training_lowers_loss(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ranking_build.models import default_encoder_path
    from ranking_gateway.training.examples import examples_from_qrels
    from ranking_gateway.training.loop import TrainConfig, listwise_loss, train

    coll = load_collection(make_collection(tmp_path / "c"), "train")
    docs = coll.doc_by_id
    # every other document is a candidate negative: the loss must learn to separate them
    cands = {q: [d for d in TOPICS if d != q[2:]] for q in coll.queries}
    examples = examples_from_qrels(coll.queries, coll.qrels, cands, docs, n_negatives=3, seed=0)
    assert len(examples) == 8 and all(len(e.negatives) == 3 for e in examples)

    path = default_encoder_path()
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)
    cfg = TrainConfig(epochs=5, batch_queries=8, lr=2e-4, max_length=64, warmup_fraction=0.0, seed=0)

    def full_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(listwise_loss(model, tok, examples, cfg))

    before = full_loss()
    result = train(model, tok, examples, cfg)
    after = full_loss()
    print("listwise loss before/after", before, after)
    assert len(result.step_losses) == 5
    assert after < before * 0.8, (before, after)


def tiny_model():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ranking_build.models import default_encoder_path

    torch.manual_seed(0)
    path = str(default_encoder_path())
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1), AutoTokenizer.from_pretrained(path)


@pytest.mark.slow
def test_each_held_out_improvement_saves_so_the_best_epoch_stays_saved(tmp_path: Path, monkeypatch) -> None:
    """Epoch 2 scores best and epoch 3 worse: what is saved last is epoch 2's weights, not the final ones."""
    from ranking_gateway.training import loop
    from ranking_gateway.training.examples import examples_from_qrels

    coll = load_collection(make_collection(tmp_path / "c"), "train")
    cands = {q: [d for d in TOPICS if d != q[2:]] for q in coll.queries}
    examples = examples_from_qrels(coll.queries, coll.qrels, cands, coll.doc_by_id, n_negatives=3, seed=0)
    model, tok = tiny_model()
    weights = lambda: model.classifier.weight.detach().clone()  # noqa: E731 (the head moves every step)
    scripted, evaluated, saved = iter([0.4, 0.7, 0.6]), [], []

    def heldout_ndcg(model_, tokenizer, heldout, cfg) -> dict[str, float]:
        evaluated.append(weights())
        return {"best_ndcg@10": next(scripted), "best_alpha": 1.0}

    monkeypatch.setattr(loop, "evaluate_heldout", heldout_ndcg)
    held = loop.HeldOut(queries={"q": "?"}, candidates={}, qrels={})
    cfg = loop.TrainConfig(epochs=3, batch_queries=8, lr=1e-3, max_length=32, warmup_fraction=0.0, seed=0)
    result = loop.train(model, tok, examples, cfg, heldout=held, save_best=lambda e: saved.append((e, weights())))
    assert result.best_epoch == 2 and [e for e, _ in saved] == [1, 2]
    assert torch.equal(saved[-1][1], evaluated[1]) and not torch.equal(evaluated[1], evaluated[2])


@pytest.mark.slow
def test_cli_saves_the_best_epoch_as_a_loadable_reranker(tmp_path: Path) -> None:
    from ranking_gateway.training.command import register
    from ranking_gateway.training.examples import split_heldout
    from ranking_gateway.training.loop import HeldOut, TrainConfig, evaluate_heldout
    import argparse

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ranking_gateway.training.mining import mine_candidates

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out, root = tmp_path / "model", make_collection(tmp_path / "c")
    args = parser.parse_args([
        "train-reranker", "--collection", str(root), "--out", str(out), "--epochs", "2", "--max-length", "64",
        "--negatives", "3", "--mine-depth", "5", "--eval-candidates", "8", "--heldout-fraction", "0.25",
        "--batch-queries", "3", "--lr", "2e-4", "--bf16", "off",
    ])
    assert args.handler(args) == 0
    report = json.loads((out / "training_report.json").read_text())
    per_epoch = [e["best_ndcg@10"] for e in report["epochs"]]
    assert report["heldout_queries"] == 2 and len(per_epoch) == 2
    assert report["best_epoch"] == 1 + per_epoch.index(max(per_epoch))  # the first epoch reaching the best
    best = report["epochs"][report["best_epoch"] - 1]
    assert report["recommended_rerank_alpha"] == best["best_alpha"]

    # the saved weights are the best epoch's: they reproduce its held-out numbers (all 8 documents
    # are a held-out query's dense candidates, so the reranker's order is what they measure)
    coll = load_collection(root, "train")
    _, held = split_heldout(sorted(coll.queries), 0.25, seed=13)
    mined = mine_candidates("dense", coll.documents, {q: coll.queries[q] for q in held}, 8)
    docs = coll.doc_by_id
    candidates = {q: [(d, docs[d].full_text, s) for d, s in mined[q]] for q in held}
    heldout = HeldOut({q: coll.queries[q] for q in held}, candidates, {q: coll.qrels[q] for q in held})
    model = AutoModelForSequenceClassification.from_pretrained(str(out))
    again = evaluate_heldout(model, AutoTokenizer.from_pretrained(str(out)), heldout, TrainConfig(max_length=64))
    assert again == pytest.approx({k: v for k, v in best.items() if k in again})

    reranker = CrossEncoder(out)  # the contract `build --reranker` relies on
    enc = AutoTokenizer.from_pretrained(str(out))(["q"], ["d"], return_tensors="pt")
    logits = reranker(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    assert logits.shape == (1, 1)


@pytest.mark.parametrize("fraction,expected", [(0.25, 2), (0.0, 0)])
def test_heldout_split_is_deterministic(fraction: float, expected: int) -> None:
    from ranking_gateway.training.examples import split_heldout

    a = split_heldout([f"q{i}" for i in range(8)], fraction, seed=1)
    assert a == split_heldout([f"q{i}" for i in reversed(range(8))], fraction, seed=1)
    assert len(a[1]) == expected and not set(a[0]) & set(a[1])
