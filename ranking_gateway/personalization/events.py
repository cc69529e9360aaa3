"""The feedback event schema and its strict validation.

`parse_event` turns a decoded JSON body into an `Event` or raises an `EventError` that carries
the HTTP status, a machine-readable code and a message, so the API can answer
`{"error": {"code", "message"}}` without changing anything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ranking_gateway.serving.schemas import RequestError, string_field

# how much one event of each type pulls the profile towards (or, negative, away from) the document
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"click": 1.0, "dwell": 1.5, "purchase": 3.0, "skip": -0.5}
)
EVENT_FIELDS = frozenset({"user_id", "doc_id", "type", "request_id", "position", "ts"})
MAX_ID_LENGTH = 256
# an event may carry the client's timestamp; one from further in the future than this is refused
MAX_CLOCK_SKEW_S = 300.0


class EventError(RequestError):
    """A refused event (422 `invalid_request` unless a subclass says otherwise); the gateway
    answers it like any other `RequestError`."""

    STATUS, CODE = 422, "invalid_request"

    def __init__(self, message: str) -> None:
        super().__init__(self.STATUS, self.CODE, message)


class UnknownField(EventError):
    CODE = "unknown_field"


class UnknownDocument(EventError):
    STATUS, CODE = 404, "unknown_document"


@dataclass(frozen=True, slots=True)
class Event:
    user_id: str
    doc_id: str
    type: str
    ts: float
    request_id: str | None = None
    position: int | None = None

    @property
    def weight(self) -> float:
        return DEFAULT_EVENT_WEIGHTS[self.type]

    def to_record(self) -> dict[str, Any]:
        """The event-log line for this event."""
        return {
            "kind": "event",
            "user_id": self.user_id,
            "doc_id": self.doc_id,
            "type": self.type,
            "ts": self.ts,
            "request_id": self.request_id,
            "position": self.position,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Event:
        """Inverse of `to_record` for lines read back from the log (trusted, already validated)."""
        return cls(
            user_id=record["user_id"],
            doc_id=record["doc_id"],
            type=record["type"],
            ts=float(record["ts"]),
            request_id=record.get("request_id"),
            position=record.get("position"),
        )


def _identifier(body: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    return string_field(body, name, required=required, max_chars=MAX_ID_LENGTH, error=EventError)


def validate_user_id(user_id: object) -> str:
    """The same rule for a user id in a path (`/v1/users/{id}`) as in an event body."""
    return _identifier({"user_id": user_id}, "user_id", required=True)  # type: ignore[return-value]


def parse_event(
    body: object,
    *,
    doc_exists: Callable[[str], bool] | None = None,
    now: float | None = None,
) -> Event:
    """Validate a decoded `POST /v1/events` body; shape errors (422) are checked before the
    document's existence (404), so a malformed body never reports a missing document."""
    if not isinstance(body, Mapping):
        raise EventError("the body must be a JSON object")
    unknown = sorted(set(body) - EVENT_FIELDS)
    if unknown:
        raise UnknownField(f"unknown field(s): {', '.join(unknown)}")
    user_id = _identifier(body, "user_id", required=True)
    doc_id = _identifier(body, "doc_id", required=True)
    request_id = _identifier(body, "request_id", required=False)
    kind = body.get("type")
    if kind not in DEFAULT_EVENT_WEIGHTS:
        raise EventError(f"'type' must be one of {', '.join(DEFAULT_EVENT_WEIGHTS)}, got {kind!r}")
    position = body.get("position")
    if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 0):
        raise EventError("'position' must be a non-negative integer or null")
    now = time.time() if now is None else now
    ts = body.get("ts")
    if ts is None:
        ts = now
    elif isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts < 0:
        raise EventError("'ts' must be a non-negative number of seconds since the epoch, or null")
    elif ts > now + MAX_CLOCK_SKEW_S:
        raise EventError(f"'ts' is more than {MAX_CLOCK_SKEW_S:.0f} s in the future")
    if doc_exists is not None and not doc_exists(doc_id):  # type: ignore[arg-type]
        raise UnknownDocument(f"no document with id {doc_id!r}")
    return Event(
        user_id=user_id,  # type: ignore[arg-type]
        doc_id=doc_id,  # type: ignore[arg-type]
        type=kind,
        ts=float(ts),
        request_id=request_id,
        position=position,
    )
