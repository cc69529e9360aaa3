"""The feedback event: what one user did with one document, and its line in the event log.

Parsing a request body into an `Event` is the HTTP edge's job (`serving.schemas.parse_event`,
which takes its limits from here); this module is the domain only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

# how much one event of each type pulls the profile towards (or, negative, away from) the document
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"click": 1.0, "dwell": 1.5, "purchase": 3.0, "skip": -0.5}
)
EVENT_FIELDS = frozenset({"user_id", "doc_id", "type", "request_id", "position", "ts"})
MAX_ID_LENGTH = 256
# an event may carry the client's timestamp; one from further in the future than this is refused
MAX_CLOCK_SKEW_S = 300.0


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
