"""BM25 with real bm25s over the test corpus: build, save, load, search."""

from pathlib import Path

import numpy as np
import pytest

from ranking_gateway.core.corpus import read_corpus
from ranking_gateway.core.lexical import LexicalIndex
from tests.conftest import CORPUS


def test_build_save_load_search(tmp_path: Path) -> None:
    docs = read_corpus(CORPUS)
    LexicalIndex.build([d.full_text for d in docs]).save(tmp_path / "bm25")
    index = LexicalIndex.load(tmp_path / "bm25", stemmer="english")
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


def test_a_batch_gets_what_each_query_gets_alone() -> None:
    """Negative mining searches in batches, the gateway one query at a time: same lists, same scores
    (the batch shares one query vocabulary; it must not change a query's terms)."""
    docs = read_corpus(CORPUS)
    index = LexicalIndex.build([d.full_text for d in docs])
    queries = ["stars collapse under gravity", "Bread with yeast, rice and stock", "The Alps", "the of", "Fact"]
    for query, (rows, scores) in zip(queries, index.search_batch(queries, 10), strict=True):
        alone = index.search_batch([query], 10)[0]
        assert rows.tolist() == alone[0].tolist() and np.array_equal(scores, alone[1])
    assert [len(r) for r, _ in index.search_batch(queries, 10)] == [3, 2, 1, 0, 10]


def test_ties_are_ordered_by_row() -> None:
    index = LexicalIndex.build(["apple pie", "banana bread", "apple pie", "plum", "apple pie"])
    rows, scores = index.search("apple", 10)
    assert rows.tolist() == [0, 2, 4] and len(set(scores.tolist())) == 1


def test_load_without_an_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no BM25 index"):
        LexicalIndex.load(tmp_path, stemmer=None)


def test_the_stemmed_index_matches_other_forms_of_a_word(tmp_path: Path) -> None:
    """Snowball English by default: "eruptions" finds "Volcanoes erupt ..." (geology-1), which the
    unstemmed index cannot; the stemmer travels with the index (the manifest records it)."""
    docs = read_corpus(CORPUS)
    texts = [d.full_text for d in docs]
    stemmed, plain = LexicalIndex.build(texts), LexicalIndex.build(texts, stemmer=None)
    assert (stemmed.stemmer, plain.stemmer) == ("english", None)
    assert [docs[r].id for r in stemmed.search("eruptions", 5)[0]] == ["geology-1"]
    assert [docs[r].id for r in stemmed.search("collapsing stars", 1)[0]] == ["astronomy-0"]
    assert len(plain.search("eruptions", 5)[0]) == 0
    assert [docs[r].id for r in plain.search("erupt", 5)[0]] == ["geology-1"]  # exact forms still match
    stemmed.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25", stemmer="english")
    assert [docs[r].id for r in loaded.search("eruptions", 5)[0]] == ["geology-1"]
    # queried without the build's stemmer, the index misses what it should find: why it is recorded
    assert len(LexicalIndex.load(tmp_path / "bm25", stemmer=None).search("eruptions", 5)[0]) == 0


def test_an_unknown_stemmer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stemmer 'klingon'"):
        LexicalIndex.build(["apple pie"], stemmer="klingon")
