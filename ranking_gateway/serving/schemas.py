"""The HTTP edge's one schema layer: every request body (search, events) and path id parsed
into a typed request, or a `RequestError` that says which field is wrong and why.

Hand-written rather than a schema library: the rules are few, and every message should say
exactly which field is wrong and why. Nothing past this module sees raw JSON.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ranking_gateway.core.config import RETRIEVAL_MODES, RetrievalMode, SearchLimits
from ranking_gateway.personalization.events import (
    DEFAULT_EVENT_WEIGHTS,
    EVENT_FIELDS,
    MAX_CLOCK_SKEW_S,
    MAX_ID_LENGTH,
    Event,
)


class RequestError(Exception):
    """A client error: becomes `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    return RequestError(422, "invalid_request", message)


def require_object(body: Any, allowed: set[str] | frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(422, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
    return body


def int_field(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"'{name}' must be an integer")
    if not low <= value <= high:
        raise invalid(f"'{name}' must be between {low} and {high}, got {value}")
    return value


def string_field(
    body: Mapping[str, Any],
    name: str,
    *,
    required: bool = False,
    max_chars: int = MAX_ID_LENGTH,
) -> str | None:
    """A non-blank string of at most `max_chars` (ids: user, document, request), or None when
    absent and not required."""
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(f"'{name}' is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"'{name}' must be a non-empty string" + ("" if required else " or null"))
    if len(value) > max_chars:
        raise invalid(f"'{name}' is longer than {max_chars} characters")
    return value


@dataclass(frozen=True)
class SearchRequest:
    query: str
    k: int
    candidates: int
    rerank: bool
    user_id: str | None
    retrieval: RetrievalMode | None = None  # None: the gateway's `serve --retrieval`

    FIELDS = frozenset({"query", "k", "candidates", "rerank", "user_id", "retrieval"})

    @classmethod
    def parse(cls, body: Any, limits: SearchLimits) -> "SearchRequest":
        body = require_object(body, cls.FIELDS)
        query = body.get("query")
        if query is None:
            raise invalid("'query' is required")
        if not isinstance(query, str):
            raise invalid("'query' must be a string")
        if not query.strip():
            raise invalid("'query' must not be empty")
        if len(query) > limits.max_query_chars:
            raise invalid(f"'query' is longer than {limits.max_query_chars} characters")
        k = int_field(body, "k", limits.default_k, 1, limits.max_k)
        candidates = int_field(body, "candidates", limits.default_candidates, 1, limits.max_candidates)
        if k > candidates:
            raise invalid(f"'k' ({k}) must not exceed 'candidates' ({candidates})")
        rerank = body.get("rerank", True)
        if not isinstance(rerank, bool):
            raise invalid("'rerank' must be a boolean")
        retrieval = body.get("retrieval")
        if retrieval is not None and retrieval not in RETRIEVAL_MODES:
            raise invalid(f"'retrieval' must be one of {', '.join(RETRIEVAL_MODES)} or null")
        return cls(query, k, candidates, rerank, string_field(body, "user_id"), retrieval)


def parse_user_id(value: object) -> str:
    """The same rule for a user id in a path (`/v1/users/{id}`) as in an event body."""
    return string_field({"user_id": value}, "user_id", required=True)  # type: ignore[return-value]


def parse_event(body: Any, *, doc_exists: Callable[[str], bool] | None = None, now: float | None = None) -> Event:
    """A `POST /v1/events` body; shape errors (422) are checked before the document's
    existence (404 `unknown_document`), so a malformed body never reports a missing document."""
    body = require_object(body, EVENT_FIELDS)
    user_id = string_field(body, "user_id", required=True)
    doc_id = string_field(body, "doc_id", required=True)
    request_id = string_field(body, "request_id")
    kind = body.get("type")
    if kind not in DEFAULT_EVENT_WEIGHTS:
        raise invalid(f"'type' must be one of {', '.join(DEFAULT_EVENT_WEIGHTS)}, got {kind!r}")
    position = body.get("position")
    if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 0):
        raise invalid("'position' must be a non-negative integer or null")
    now = time.time() if now is None else now
    ts = body.get("ts")
    if ts is None:
        ts = now
    elif isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts < 0:
        raise invalid("'ts' must be a non-negative number of seconds since the epoch, or null")
    elif ts > now + MAX_CLOCK_SKEW_S:
        raise invalid(f"'ts' is more than {MAX_CLOCK_SKEW_S:.0f} s in the future")
    if doc_exists is not None and not doc_exists(doc_id):  # type: ignore[arg-type]
        raise RequestError(404, "unknown_document", f"no document with id {doc_id!r}")
    return Event(
        user_id=user_id,  # type: ignore[arg-type]
        doc_id=doc_id,  # type: ignore[arg-type]
        type=kind,
        ts=float(ts),
        request_id=request_id,
        position=position,
    )
