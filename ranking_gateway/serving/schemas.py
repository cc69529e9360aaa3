"""Validation of request bodies into typed requests, with the error the client sees.

Hand-written rather than a schema library: the rules are few, and every message should say
exactly which field is wrong and why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ranking_gateway.core.config import RETRIEVAL_MODES, RetrievalMode, SearchLimits


class RequestError(Exception):
    """A client error: becomes `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    return RequestError(422, "invalid_request", message)


def require_object(body: Any, allowed: set[str]) -> dict[str, Any]:
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
    max_chars: int = 256,
    error: Callable[[str], RequestError] = invalid,
) -> str | None:
    """A non-blank string of at most `max_chars` (ids: user, document, request), or None when
    absent and not required. `error` builds the exception, so each API keeps its own type."""
    value = body.get(name)
    if value is None:
        if required:
            raise error(f"'{name}' is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise error(f"'{name}' must be a non-empty string" + ("" if required else " or null"))
    if len(value) > max_chars:
        raise error(f"'{name}' is longer than {max_chars} characters")
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
        body = require_object(body, set(cls.FIELDS))
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
