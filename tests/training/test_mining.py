"""Negative mining runs the served first stage, checked against independent computations: numpy
inner products over the build encoder's embeddings, the gateway's BM25 search, RRF by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ranking_gateway.core.corpus import read_corpus
from ranking_gateway.core.lexical import LexicalIndex
from ranking_gateway.training.mining import MINERS, Candidates, embed, mine_candidates
from tests.conftest import CORPUS

DOCS = read_corpus(CORPUS)
QUERIES = {"q1": "why do volcanoes erupt", "q2": "bread rising with yeast and rice", "q3": "The Alps and glaciers",
           "q4": "stars and moons of Mars"}
K = 8


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mining") / "corpus-embeddings.npy"


@pytest.fixture(scope="module")
def mined(cache: Path) -> dict[str, Candidates]:
    return {miner: mine_candidates(miner, DOCS, QUERIES, K, embeddings_cache=cache) for miner in MINERS}


def ids(cands: list[tuple[str, float]]) -> list[str]:
    return [d for d, _ in cands]


def test_dense_miner_is_exact_inner_product_over_the_encoder_embeddings(mined: dict, cache: Path) -> None:
    doc_emb, q_emb = embed(DOCS, list(QUERIES.values()), progress=False)
    np.testing.assert_allclose(np.load(cache), doc_emb, atol=1e-6)  # the cache holds the corpus embeddings
    for qid, q in zip(QUERIES, q_emb, strict=True):
        scores = doc_emb.astype(np.float64) @ q
        best = sorted(range(len(DOCS)), key=lambda r: -scores[r])[:K]
        assert ids(mined["dense"][qid]) == [DOCS[r].id for r in best]
        np.testing.assert_allclose([s for _, s in mined["dense"][qid]], scores[best], atol=1e-5)


def test_bm25_miner_is_the_gateways_lexical_search(mined: dict) -> None:
    served = LexicalIndex.build([d.full_text for d in DOCS])
    for qid, text in QUERIES.items():
        rows, scores = served.search(text, K)
        assert mined["bm25"][qid] == [(DOCS[r].id, float(s)) for r, s in zip(rows, scores)] != []


def test_hybrid_miner_is_reciprocal_rank_fusion_of_the_two(mined: dict) -> None:
    changed = 0
    for qid in QUERIES:
        dense, bm25 = ids(mined["dense"][qid]), ids(mined["bm25"][qid])
        fused = {d: sum(1 / (60 + ranked.index(d) + 1) for ranked in (dense, bm25) if d in ranked) for d in dense + bm25}
        expected = sorted(fused, key=lambda d: -fused[d])[:K]  # no exact ties among these sums
        assert ids(mined["hybrid"][qid]) == expected
        np.testing.assert_allclose([s for _, s in mined["hybrid"][qid]], [fused[d] for d in expected])
        changed += expected != dense
    assert changed  # BM25 moved some query's list


def test_unknown_miner_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown miner"):
        mine_candidates("sparse", DOCS, QUERIES, K)
