"""The event log of gateways sharing Redis: `XADD` to one stream plus the entry id in a per-user
set (one Lua script, so both or neither happen); `erase_user` `XDEL`s the user's entries.

Durability is Redis's own: an acknowledged entry survives a crash of the gateway; surviving a
crash of Redis needs `appendonly yes` (and `appendfsync always` to lose nothing on power loss) --
`describe()` reports what the server is configured for. Retention: with `max_len`, each `XADD`
trims the stream to its newest `max_len` entries (exact `MAXLEN`, one entry per append once
full), so a long-running deployment's stream stops growing; trimmed entries are gone for
training too. Without it the stream is kept whole.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.exceptions

from ranking_gateway.personalization.event_log import EventLogUnavailable, dumps_record, loads_record

log = logging.getLogger(__name__)

# XADD the record and remember its id in the user's set, atomically
_XADD_INDEXED = """
local id
if ARGV[3] ~= '' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 'r', ARGV[1])
else
  id = redis.call('XADD', KEYS[1], '*', 'r', ARGV[1])
end
if ARGV[2] ~= '' then redis.call('SADD', KEYS[2], id) end
return id
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamEventLog:
    """A Redis stream of JSON records (needs a `redis.asyncio.Redis`)."""

    def __init__(
        self,
        client: Any,
        *,
        stream: str = "rg:events",
        user_index_prefix: str = "rg:events:user:",
        max_len: int | None = None,
    ) -> None:
        if max_len is not None and max_len < 1:
            raise ValueError("max_len must be at least 1")
        self.client = client
        self.max_len = max_len
        self.stream = stream
        self.user_index_prefix = user_index_prefix
        self._xadd = client.register_script(_XADD_INDEXED)

    async def append(self, record: dict[str, Any], *, wait: bool = True) -> None:
        """`XADD`; returns once Redis has the entry (`wait` is accepted for interface parity)."""
        user_id = record.get("user_id") or ""
        try:
            await self._xadd(keys=[self.stream, self.user_index_prefix + user_id], args=[dumps_record(record), user_id, str(self.max_len or "")])
        except redis.exceptions.RedisError as exc:
            raise EventLogUnavailable(f"the event stream could not be written: {exc}") from exc

    async def flush(self) -> None:
        return None

    async def records(self, batch: int = 1000) -> AsyncIterator[dict[str, Any]]:
        start = "-"
        while True:
            entries = await self.client.xrange(self.stream, min=start, max="+", count=batch)
            for entry_id, fields in entries:
                record = loads_record(fields.get(b"r", fields.get("r")))
                if record is None:
                    log.warning("stream %s entry %s: not a JSON record", self.stream, entry_id)
                    continue
                yield record
            if len(entries) < batch:
                return
            start = "(" + _text(entries[-1][0])

    async def erase_user(self, user_id: str) -> int:
        key = self.user_index_prefix + user_id
        try:
            ids = list(await self.client.smembers(key))
            removed = 0
            for i in range(0, len(ids), 1000):
                removed += int(await self.client.xdel(self.stream, *ids[i : i + 1000]))
            await self.client.delete(key)
        except redis.exceptions.RedisError as exc:
            raise EventLogUnavailable(f"the event stream could not be changed: {exc}") from exc
        return removed

    async def describe(self) -> str:
        """What this Redis server's persistence settings promise for an acknowledged entry."""
        try:
            conf = await self.client.config_get("append*")
        except Exception as exc:  # noqa: BLE001 - CONFIG is often disabled on managed Redis
            return f"stream {self.stream}: durability unknown (CONFIG GET refused: {exc})"
        conf = {_text(k): _text(v) for k, v in conf.items()}
        if conf.get("appendonly") != "yes":
            promise = "appendonly=no: entries survive a gateway crash, not a Redis restart beyond the last RDB snapshot"
        else:
            promise = f"appendonly=yes appendfsync={conf.get('appendfsync')}: entries survive a Redis restart"
        return f"stream {self.stream}: {promise}"

    async def close(self) -> None:
        return None
