"""Training examples: one query, one positive document, and the negatives it is ranked against.

Every data source (BEIR qrels, the corpus alone, the gateway's click log) produces the same
`TrainingExample`, so the loop never knows where its supervision came from. A click source maps
"clicked" to the positive and "shown above the click but skipped" to negatives, topping the list up
with mined negatives exactly like the qrels source does. The corpus source needs no labels at all
(inverse cloze, below): it adapts the reranker to a collection before, or instead of, judged queries.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ranking_gateway.core.corpus import Document


@dataclass(frozen=True, slots=True)
class TrainingExample:
    query_id: str
    query: str
    positive: str  # document text as the model sees it (title. body)
    negatives: tuple[str, ...]
    source: str = "qrels"


@dataclass(frozen=True, slots=True)
class ClickPair:
    """One logged impression with a click: the shape a `--events FILE` reader will yield."""

    query: str
    clicked_id: str
    shown_ids: tuple[str, ...] = field(default_factory=tuple)


def _example(
    query_id: str, query: str, positive: str, negative_ids: Sequence[str], docs: Mapping[str, Document], source: str
) -> TrainingExample:
    return TrainingExample(
        query_id=query_id, query=query, positive=positive,
        negatives=tuple(docs[d].full_text for d in negative_ids), source=source,
    )


def sample_negatives(
    candidates: Sequence[str], exclude: set[str], n: int, rng: random.Random, skip_top: int = 0
) -> list[str]:
    """`n` hard negatives drawn from the retriever's candidates, never a judged positive.

    `skip_top` drops the very top ranks, where unjudged-but-relevant documents concentrate.
    """
    pool = [d for d in candidates[skip_top:] if d not in exclude]
    if len(pool) <= n:
        return pool
    return rng.sample(pool, n)


def examples_from_qrels(
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    candidates: Mapping[str, Sequence[str]],
    docs: Mapping[str, Document],
    *,
    n_negatives: int,
    seed: int,
) -> list[TrainingExample]:
    """One example per (query, relevant document); negatives from that query's mined candidates."""
    rng = random.Random(seed)
    out: list[TrainingExample] = []
    for qid in sorted(qrels):
        positives = {d for d, g in qrels[qid].items() if g > 0}
        for pid in sorted(positives):
            negs = sample_negatives(candidates.get(qid, ()), positives, n_negatives, rng)
            if negs:
                out.append(_example(qid, queries[qid], docs[pid].full_text, negs, docs, "qrels"))
    return out


def examples_from_clicks(
    clicks: Iterable[ClickPair],
    candidates: Mapping[str, Sequence[str]],
    docs: Mapping[str, Document],
    *,
    n_negatives: int,
    seed: int,
) -> list[TrainingExample]:
    """Click-log supervision: skipped-above-the-click documents first, mined negatives to fill up.

    `candidates` is keyed by query text here (click logs have no query ids).
    """
    rng = random.Random(seed)
    out: list[TrainingExample] = []
    for i, click in enumerate(clicks):
        if click.clicked_id not in docs:
            continue
        shown = list(click.shown_ids)
        skipped = shown[: shown.index(click.clicked_id)] if click.clicked_id in shown else []
        negs = [d for d in skipped if d in docs][:n_negatives]
        exclude = {click.clicked_id, *negs}
        negs += sample_negatives(candidates.get(click.query, ()), exclude, n_negatives - len(negs), rng)
        if negs:
            out.append(_example(f"click-{i}", click.query, docs[click.clicked_id].full_text, negs, docs, "events"))
    return out


def split_heldout(query_ids: Iterable[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic split of query ids into (train, held-out); held-out is never empty if fraction > 0."""
    ids = sorted(set(query_ids))
    random.Random(seed).shuffle(ids)
    n_held = min(len(ids) - 1, max(1, round(len(ids) * fraction))) if fraction > 0 and len(ids) > 1 else 0
    return sorted(ids[n_held:]), sorted(ids[:n_held])


@dataclass(frozen=True, slots=True)
class PseudoQuery:
    """A self-supervised query cut from a document, and that document without it."""

    query_id: str
    text: str
    doc_id: str
    positive: str


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def inverse_cloze_queries(
    docs: Sequence[Document], *, per_doc: int, seed: int, min_words: int = 6, max_words: int = 48
) -> list[PseudoQuery]:
    """Up to `per_doc` pseudo-queries per document: its title, or one of its sentences.

    The positive is the document *without* that text (the inverse cloze task of Lee et al., 2019),
    so the model learns what a passage is about rather than string matching. In scientific
    abstracts a sentence stating a finding reads much like a claim a user would search for.
    """
    rng = random.Random(seed)
    out: list[PseudoQuery] = []
    for doc in docs:
        sentences = split_sentences(doc.text)
        options: list[tuple[str, str]] = []  # (query, positive text)
        if doc.title and len(doc.title.split()) >= 3 and len(doc.text.split()) >= min_words:
            options.append((doc.title, doc.text))
        for i, sentence in enumerate(sentences):
            if not min_words <= len(sentence.split()) <= max_words or len(sentences) < 3:
                continue
            rest = " ".join(sentences[:i] + sentences[i + 1 :])
            options.append((sentence, f"{doc.title}. {rest}" if doc.title else rest))
        for n, (query, positive) in enumerate(rng.sample(options, min(per_doc, len(options)))):
            out.append(PseudoQuery(f"ict-{doc.id}-{n}", query, doc.id, positive))
    return out


def examples_from_pseudo_queries(
    pseudo: Sequence[PseudoQuery],
    candidates: Mapping[str, Sequence[str]],
    docs: Mapping[str, Document],
    *,
    n_negatives: int,
    seed: int,
) -> list[TrainingExample]:
    """Negatives: the retriever's candidates for the pseudo-query, never its source document."""
    rng = random.Random(seed)
    out: list[TrainingExample] = []
    for pq in pseudo:
        negs = sample_negatives(candidates.get(pq.query_id, ()), {pq.doc_id}, n_negatives, rng)
        if negs:
            out.append(_example(pq.query_id, pq.text, pq.positive, negs, docs, "corpus"))
    return out
