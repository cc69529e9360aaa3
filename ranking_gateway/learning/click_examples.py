"""Reranker supervision from a window of the click log, with the positions the clicks were at.

Each positive event (click, dwell, purchase) joined to its impression by `request_id` (and the
same user) becomes a `ClickExample`: the logged query, the clicked corpus row, and the rows shown
in the same request that were not acted on. The clicks are position-biased (a user examines the
top more than the bottom), so each example carries the position it was clicked at and weighs
`position ** eta` (1 / the examination propensity, clipped): Joachims et al.'s propensity-
weighted ranking objective, whose expectation ranks relevant documents as if every position had
been examined. No I/O, no torch: `reranker_round` trains and evaluates on these.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ranking_gateway.personalization.events import DEFAULT_EVENT_WEIGHTS
from ranking_gateway.personalization.trainer import holdout_mask


@dataclass(frozen=True)
class ClickExample:
    request_id: str
    query: str
    clicked: int  # corpus row of the document acted on
    others: tuple[int, ...]  # rows shown in the same request and not acted on, in the served order
    position: int  # 1-based position the clicked document was shown at
    skipped_above: int  # unclicked documents shown above it: its rank in the logged order is this + 1

    def weight(self, eta: float, cap: float) -> float:
        """1 / propensity: `position ** eta`, at most `cap` (a few deep clicks must not dominate)."""
        return float(min(cap, self.position**eta))

    def rank(self, clicked_score: float, other_scores: Sequence[float]) -> int:
        """1-based rank of the clicked document among the request's unclicked ones under a model."""
        return 1 + int(np.sum(np.asarray(other_scores) > clicked_score))


def click_examples(records: Iterable[dict[str, Any]], row_of: Mapping[str, int]) -> list[ClickExample]:
    """One example per (request, document acted on). Impressions without a query, events of
    another user than the impression's, and documents outside the corpus are skipped."""
    impressions: dict[str, dict[str, Any]] = {}
    acted: dict[str, list[str]] = defaultdict(list)
    for record in records:
        kind, rid = record.get("kind"), record.get("request_id")
        if not isinstance(rid, str):
            continue
        if kind == "impression":
            impressions[rid] = record
        elif kind == "event" and DEFAULT_EVENT_WEIGHTS.get(record.get("type"), 0) > 0:
            acted[rid].append(record)  # type: ignore[arg-type]
    examples: list[ClickExample] = []
    for rid, events in acted.items():
        imp = impressions.get(rid)
        query = None if imp is None else imp.get("query")
        if imp is None or not isinstance(query, str) or not query.strip():
            continue
        shown = [d for d in imp.get("doc_ids") or () if isinstance(d, str)]
        clicked = {e.get("doc_id") for e in events if e.get("user_id") == imp.get("user_id")}
        clicked &= set(shown)
        unclicked = [d for d in shown if d not in clicked and d in row_of]
        if not unclicked:
            continue
        others = tuple(row_of[d] for d in unclicked)
        for doc_id in sorted(clicked, key=shown.index):
            if doc_id in row_of:
                position = shown.index(doc_id) + 1
                above = sum(1 for d in unclicked if shown.index(d) < position - 1)
                examples.append(ClickExample(rid, query, row_of[doc_id], others, position, above))
    return examples


def split_by_request(examples: list[ClickExample], fraction: float) -> tuple[list[ClickExample], list[ClickExample]]:
    """(training, held out): a request's clicks go the same way, by the hash the personaliser's
    trainer uses, so both learners hold out the same requests."""
    held = holdout_mask([e.request_id for e in examples], fraction) if examples else np.zeros(0, bool)
    return [e for e, h in zip(examples, held) if not h], [e for e, h in zip(examples, held) if h]


def ips_mean_rank(examples: Sequence[ClickExample], ranks: Sequence[float], eta: float, cap: float) -> float:
    """The propensity-weighted mean rank of the clicked documents: lower is better; the click
    log's unbiased estimate of where a model puts what users want (Joachims et al., 2017)."""
    weights = np.array([e.weight(eta, cap) for e in examples])
    return float(np.sum(weights * np.asarray(ranks)) / np.sum(weights))
