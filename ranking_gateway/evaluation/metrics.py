"""NDCG@k, MRR@k and Recall@k, implemented to agree with trec_eval (checked against pytrec_eval).

trec_eval conventions kept here: ties in score are broken by document id in *descending* order,
gains are the raw qrel grades with log2(rank + 1) discounts, documents judged 0 or below are not
relevant for MRR/recall, and a query with no relevant document is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

Run = Mapping[str, Mapping[str, float]]  # query id -> {doc id -> score}
Qrels = Mapping[str, Mapping[str, int]]  # query id -> {doc id -> grade}


def ranked_ids(scores: Mapping[str, float]) -> list[str]:
    """Docs by score descending; ties by doc id descending (trec_eval's order)."""
    return [d for d, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def ndcg_at_k(ranking: list[str], judged: Mapping[str, int], k: int = 10) -> float:
    dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at_k(ranking: list[str], judged: Mapping[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranking[:k]):
        if judged.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def recall_at_k(ranking: list[str], judged: Mapping[str, int], k: int = 100) -> float:
    relevant = {d for d, g in judged.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def per_query(run: Run, qrels: Qrels) -> dict[str, dict[str, float]]:
    """NDCG@10, MRR@10, Recall@100 of each judged query; a query absent from the run scores 0."""
    out: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        if not any(g > 0 for g in judged.values()):
            continue
        ranking = ranked_ids(run.get(qid, {}))
        out[qid] = {
            "ndcg@10": ndcg_at_k(ranking, judged, 10),
            "mrr@10": mrr_at_k(ranking, judged, 10),
            "recall@100": recall_at_k(ranking, judged, 100),
        }
    return out


def aggregate(run: Run, qrels: Qrels) -> dict[str, float]:
    """Mean of each metric over the judged queries."""
    rows = per_query(run, qrels)
    if not rows:
        return {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
    names = next(iter(rows.values())).keys()
    return {name: sum(r[name] for r in rows.values()) / len(rows) for name in names}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), without pulling numpy into the hot path."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
