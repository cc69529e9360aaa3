"""Reranker supervision from the gateway's own log: impressions joined with clicks.

A personalised search logs an impression (`request_id`, `user_id`, the query, the documents
shown in order); a click, dwell or purchase event carries the same `request_id`. Each such
positive event becomes a `ClickPair`: the query, the document acted on, and what was shown,
so `examples_from_clicks` can take the documents skipped above it as negatives.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ranking_gateway.personalization.events import DEFAULT_EVENT_WEIGHTS
from ranking_gateway.training.examples import ClickPair


def click_pairs(records: Iterable[dict[str, Any]]) -> list[ClickPair]:
    """One pair per (request, positive event); events without a logged query are skipped
    (impressions written before queries were logged, or searches without a user)."""
    impressions: dict[str, dict[str, Any]] = {}
    positives: list[dict[str, Any]] = []
    for record in records:
        kind = record.get("kind")
        if kind == "impression" and isinstance(record.get("request_id"), str):
            impressions[record["request_id"]] = record
        elif kind == "event" and DEFAULT_EVENT_WEIGHTS.get(record.get("type"), 0) > 0 and record.get("request_id"):
            positives.append(record)
    pairs: list[ClickPair] = []
    seen: set[tuple[str, str]] = set()
    for event in positives:
        imp = impressions.get(event["request_id"])
        if imp is None or imp.get("user_id") != event.get("user_id"):
            continue
        query, doc_id = imp.get("query"), event.get("doc_id")
        if not isinstance(query, str) or not query.strip() or not isinstance(doc_id, str):
            continue
        if (event["request_id"], doc_id) in seen:  # a click and a dwell on the same result: one example
            continue
        seen.add((event["request_id"], doc_id))
        pairs.append(ClickPair(query=query, clicked_id=doc_id, shown_ids=tuple(imp.get("doc_ids") or ())))
    return pairs
