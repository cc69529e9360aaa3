"""Click-log supervision: impressions (with their query) joined with positive events."""

from __future__ import annotations

from ranking_gateway.training.clicks import click_pairs


def impression(request_id: str, user: str, docs: list[str], query: str | None = "statins and stroke") -> dict:
    record = {"kind": "impression", "request_id": request_id, "user_id": user, "doc_ids": docs, "features": []}
    if query is not None:
        record["query"] = query
    return record


def event(request_id: str | None, user: str, doc: str, kind: str = "click") -> dict:
    return {"kind": "event", "request_id": request_id, "user_id": user, "doc_id": doc, "type": kind}


def test_joins_positive_events_to_the_impression_they_came_from() -> None:
    records = [
        impression("r1", "ann", ["a", "b", "c"]),
        event("r1", "ann", "c"),
        event("r1", "ann", "c", "dwell"),  # the same result again: one example
        event("r1", "ann", "a", "skip"),  # not a positive
        impression("r2", "bob", ["x", "y"], query="vitamin d"),
        event("r2", "bob", "y", "purchase"),
        event("r2", "eve", "y"),  # another user's event under bob's request: ignored
        event(None, "ann", "b"),  # no request id: cannot be joined
        impression("r3", "ann", ["a"], query=None),  # logged before queries were: skipped
        event("r3", "ann", "a"),
        event("r9", "ann", "a"),  # impression not in the log
    ]
    pairs = click_pairs(records)
    assert [(p.query, p.clicked_id, p.shown_ids) for p in pairs] == [
        ("statins and stroke", "c", ("a", "b", "c")),
        ("vitamin d", "y", ("x", "y")),
    ]
