"""Training examples: inverse-cloze pseudo-queries from a bare corpus, and their negatives."""

from __future__ import annotations

from ranking_gateway.core.corpus import Document
from ranking_gateway.training.examples import (
    examples_from_pseudo_queries,
    inverse_cloze_queries,
    split_sentences,
)

ABSTRACT = (
    "Statins lower LDL cholesterol in most adults. The effect was seen across 12 trials. "
    "(Secondary outcomes) included stroke and myocardial infarction. Adverse events were rare in all arms."
)
DOCS = [
    Document("d1", "Statin therapy and cardiovascular outcomes", ABSTRACT),
    Document("d2", "Short", "Too short."),
    Document("d3", "Vitamin D supplementation in elderly people", "Vitamin D did not reduce fractures in this cohort."),
]


def test_split_sentences_keeps_numbers_and_parentheses_at_sentence_starts() -> None:
    assert split_sentences(ABSTRACT) == [
        "Statins lower LDL cholesterol in most adults.",
        "The effect was seen across 12 trials.",
        "(Secondary outcomes) included stroke and myocardial infarction.",
        "Adverse events were rare in all arms.",
    ]


def test_inverse_cloze_removes_the_query_from_its_positive() -> None:
    pseudo = inverse_cloze_queries(DOCS, per_doc=10, seed=3)
    by_doc: dict[str, list] = {}
    for pq in pseudo:
        by_doc.setdefault(pq.doc_id, []).append(pq)
        assert pq.text not in pq.positive  # the model cannot string-match its way to the answer
    # d1: its title and its 4 sentences; d2 has nothing long enough; d3: its title (one sentence only)
    assert len(by_doc["d1"]) == 5 and "d2" not in by_doc and len(by_doc["d3"]) == 1
    title_query = next(pq for pq in by_doc["d1"] if pq.text == DOCS[0].title)
    assert title_query.positive == ABSTRACT
    sentence_query = next(pq for pq in by_doc["d1"] if pq.text.startswith("The effect"))
    assert sentence_query.positive.startswith("Statin therapy and cardiovascular outcomes. Statins lower")
    assert len({pq.query_id for pq in pseudo}) == len(pseudo)


def test_inverse_cloze_caps_per_document_and_is_deterministic() -> None:
    a = inverse_cloze_queries(DOCS, per_doc=2, seed=7)
    assert a == inverse_cloze_queries(DOCS, per_doc=2, seed=7)
    assert sum(pq.doc_id == "d1" for pq in a) == 2


def test_pseudo_query_negatives_never_include_the_source_document() -> None:
    pseudo = inverse_cloze_queries(DOCS, per_doc=10, seed=0)
    cands = {pq.query_id: ["d1", "d3", "d2"] for pq in pseudo}
    docs = {d.id: d for d in DOCS}
    examples = examples_from_pseudo_queries(pseudo, cands, docs, n_negatives=5, seed=0)
    assert len(examples) == len(pseudo) and all(e.source == "corpus" for e in examples)
    for pq, ex in zip(pseudo, examples):
        assert docs[pq.doc_id].full_text not in ex.negatives and len(ex.negatives) == 2
