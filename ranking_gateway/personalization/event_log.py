"""The durable, append-only log of feedback events and search impressions: the interface both
backends implement (`jsonl_log.JsonlEventLog`, `redis_stream_log.RedisStreamEventLog`) and the
record encoding they share.

A record is a JSON object: `Event.to_record()` (`"kind": "event"`) or an impression
(`"kind": "impression"`). An awaited `append` returns only once the record is durable in the
backend's sense; `erase_user` removes a user's records (events and impressions) from the live log.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

from ranking_gateway.core.errors import BackendUnavailable


class EventLogUnavailable(BackendUnavailable):
    """The log could not persist a record (disk error, Redis down): the API answers 503 and the
    record is not acknowledged."""


class EventLog(Protocol):
    async def append(self, record: dict[str, Any], *, wait: bool = True) -> None:
        """With `wait`, return once the record is durable; without (impressions), at once."""

    async def flush(self) -> None:
        """Wait until every record appended so far is durable."""

    def records(self) -> AsyncIterator[dict[str, Any]]:
        """Every record, oldest first."""

    async def erase_user(self, user_id: str) -> int:
        """Remove the user's records; returns how many."""

    async def describe(self) -> str:
        """Where the log is and what an acknowledgement promises (logged at start-up)."""

    async def close(self) -> None: ...


def dumps_record(record: dict[str, Any]) -> str:
    """Compact JSON with non-ASCII kept: one JSONL line (without its newline) or stream entry."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def loads_record(raw: str | bytes | None) -> dict[str, Any] | None:
    """The record back, or None for what is not a JSON object (a torn line never acknowledged)."""
    try:
        record = json.loads(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return record if isinstance(record, dict) else None
