"""BM25 with real bm25s over the test corpus: build, save, load, search."""

from pathlib import Path

import numpy as np
import pytest

from ranking_gateway.core.corpus import read_corpus
from ranking_gateway.core.lexical import LexicalIndex
from ranking_gateway.training.mining import bm25_candidates
from tests.conftest import CORPUS


def test_build_save_load_search(tmp_path: Path) -> None:
    docs = read_corpus(CORPUS)
    LexicalIndex.build([d.full_text for d in docs]).save(tmp_path / "bm25")
    index = LexicalIndex.load(tmp_path / "bm25")
    assert len(index) == 30 and index.vocabulary > 100
    rows, scores = index.search("Phobos and Deimos", 5)
    assert [docs[r].id for r in rows] == ["astronomy-2"]  # only documents sharing a term
    assert rows.dtype == np.int64 and scores[0] > 0
    rows, scores = index.search("Fact", 100)  # every title has it: all 30, best first, capped at the corpus
    assert len(rows) == 30 and len(set(rows.tolist())) == 30 and (np.diff(scores) <= 0).all()


def test_queries_without_a_known_term_find_nothing() -> None:
    index = LexicalIndex.build([d.full_text for d in read_corpus(CORPUS)])
    for query in ("the of and", "zzzz qqqq", "!!!"):
        rows, scores = index.search(query, 10)
        assert len(rows) == len(scores) == 0


def test_tokenisation_matches_training_mining() -> None:
    """The served index and the reranker's BM25-mined negatives see the same terms and scores."""
    docs = read_corpus(CORPUS)
    index = LexicalIndex.build([d.full_text for d in docs])
    queries = {"q1": "stars collapse under gravity", "q2": "Bread with yeast, rice and stock", "q3": "The Alps"}
    mined = bm25_candidates(docs, queries, 10)
    for qid, text in queries.items():
        rows, scores = index.search(text, 10)
        served = {docs[r].id: float(s) for r, s in zip(rows, scores)}
        assert served.keys() == dict(mined[qid]).keys()
        np.testing.assert_allclose([served[d] for d, _ in mined[qid]], [s for _, s in mined[qid]], rtol=1e-6)


def test_load_without_an_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no BM25 index"):
        LexicalIndex.load(tmp_path)
