"""The durable, append-only log of feedback events and search impressions.

Two backends with one async interface (`append`, `flush`, `records`, `erase_user`, `close`):

* `JsonlEventLog` (default): JSON lines in numbered segment files (`events-000001.jsonl`, ...),
  a new segment once one passes `max_bytes`. Appends are group-committed: every record queued
  while one write+fdatasync is in flight goes into the next single write+fdatasync, and
  `await append(record)` returns only once the fdatasync covering that record has returned, so
  an acknowledged event survives a crash of the process (and, with fsync on, of the machine).
  One process owns a log directory (an exclusive `flock`); several gateway processes need one
  directory each, or the Redis backend.
* `RedisStreamEventLog`: `XADD` to one stream plus a per-user set of entry ids (one Lua script,
  so both or neither happen). Durability is Redis's own: an acknowledged entry survives a crash
  of the gateway; surviving a crash of Redis needs `appendonly yes` (and `appendfsync always`
  to lose nothing on power loss) -- `durability()` reports what the server is configured for.

`erase_user` removes a user's records (events and impressions) from the live store: the JSONL
backend rewrites each affected segment to a temporary file, fsyncs it and renames it over the
original; the Redis backend `XDEL`s the user's entries.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Protocol

from ranking_gateway.core.errors import BackendUnavailable

log = logging.getLogger(__name__)

SEGMENT_RE = re.compile(r"^events-(\d{6,})\.jsonl$")


class EventLogUnavailable(BackendUnavailable):
    """The log could not persist a record (disk error, Redis down): the API answers 503 and the
    record is not acknowledged."""


class EventLogLocked(Exception):
    """Another process owns this JSONL log directory."""


class EventLog(Protocol):
    async def append(self, record: dict[str, Any], *, wait: bool = True) -> None: ...
    async def flush(self) -> None: ...
    def records(self) -> AsyncIterator[dict[str, Any]]: ...
    async def erase_user(self, user_id: str) -> int: ...
    async def close(self) -> None: ...


def encode_record(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


def segment_paths(directory: Path) -> list[Path]:
    """The segment files of a log directory, oldest first."""
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := SEGMENT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every record of a log file, or of all segments of a log directory in order. A line that is
    not JSON (the torn tail of a crashed writer, never acknowledged) is skipped with a warning."""
    path = Path(path)
    files = segment_paths(path) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    log.warning("%s:%d: skipping an undecodable line", file, number)
                    continue
                if isinstance(record, dict):
                    yield record


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class JsonlEventLog:
    """JSON-lines segments with size-based rotation and group-committed fdatasync."""

    def __init__(self, directory: str | Path, *, max_bytes: int = 64 << 20, fsync: bool = True) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise EventLogLocked(f"{self.directory}: the event log is in use by another process") from None
        segments = segment_paths(self.directory)
        self._path = segments[-1] if segments else self._segment_path(1)
        self._open_current(repair=True)
        self._pending: list[tuple[bytes, asyncio.Future[None] | None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._io_lock = asyncio.Lock()
        self.commits = 0  # write+fdatasync rounds so far (one per group commit)
        self.appended = 0  # records written so far

    def _segment_path(self, number: int) -> Path:
        return self.directory / f"events-{number:06d}.jsonl"

    def _open_current(self, *, repair: bool = False) -> None:
        created = not self._path.exists()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        if created:
            _fsync_dir(self.directory)
        if repair and self._size:
            # a crash mid-write can leave a torn last line; it was never acknowledged, drop it
            with self._path.open("rb") as fh:
                fh.seek(max(0, self._size - (1 << 20)))
                tail = fh.read()
            if not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                keep = self._size - len(tail) + cut + 1 if cut >= 0 else self._size - len(tail)
                log.warning("%s: dropping a torn last line (%d bytes)", self._path, self._size - keep)
                os.ftruncate(self._fd, keep)
                os.fsync(self._fd)
                self._size = keep

    @property
    def path(self) -> Path:
        """The segment being appended to."""
        return self._path

    async def append(self, record: dict[str, Any], *, wait: bool = True) -> None:
        """Queue `record`; with `wait`, return once it is written and fdatasync'd (raises
        `EventLogUnavailable` if that failed). Without, return at once (impressions)."""
        if self._fd < 0:
            raise EventLogUnavailable("the event log is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] | None = loop.create_future() if wait else None
        self._pending.append((encode_record(record), future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_loop())
        if future is not None:
            await future

    async def flush(self) -> None:
        """Wait until everything queued so far is on disk."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush_loop(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self._io_lock:
                    await asyncio.to_thread(self._write_batch, b"".join(line for line, _ in batch))
            except Exception as exc:  # noqa: BLE001 - any I/O failure means "not acknowledged"
                log.error("event log write failed: %s", exc)
                error = EventLogUnavailable(f"the event log could not be written: {exc}")
                for _, future in batch:
                    if future is not None and not future.done():
                        future.set_exception(error)
                continue
            self.commits += 1
            self.appended += len(batch)
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_result(None)

    def _write_batch(self, data: bytes) -> None:
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        try:
            _write_all(self._fd, data)
            if self.fsync:
                os.fdatasync(self._fd)
        except OSError:
            try:  # leave no partial line for the next batch to be glued to
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise
        self._size += len(data)

    def _rotate(self) -> None:
        match = SEGMENT_RE.match(self._path.name)
        number = int(match.group(1)) + 1 if match else 1
        os.close(self._fd)
        self._path = self._segment_path(number)
        self._open_current()

    async def records(self) -> AsyncIterator[dict[str, Any]]:
        await self.flush()
        for record in read_records(self.directory):
            yield record

    async def erase_user(self, user_id: str) -> int:
        """Rewrite every segment holding records of `user_id` without them; returns how many
        records were removed."""
        await self.flush()
        async with self._io_lock:
            return await asyncio.to_thread(self._erase_sync, user_id)

    def _erase_sync(self, user_id: str) -> int:
        needle = json.dumps(user_id, ensure_ascii=False).encode("utf-8")
        removed = 0
        for path in segment_paths(self.directory):
            data = path.read_bytes()
            if needle not in data:
                continue
            kept: list[bytes] = []
            dropped = 0
            for line in data.splitlines(keepends=True):
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    record = None
                if isinstance(record, dict) and record.get("user_id") == user_id:
                    dropped += 1
                else:
                    kept.append(line)
            if not dropped:
                continue
            tmp = path.with_name(path.name + ".tmp")
            with tmp.open("wb") as fh:
                fh.write(b"".join(kept))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            _fsync_dir(self.directory)
            removed += dropped
            if path == self._path:  # our descriptor points at the replaced inode: reopen
                os.close(self._fd)
                self._open_current()
        return removed

    async def close(self) -> None:
        await self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


# XADD the record and remember its id in the user's set, atomically
_XADD_INDEXED = """
local id = redis.call('XADD', KEYS[1], '*', 'r', ARGV[1])
if ARGV[2] ~= '' then redis.call('SADD', KEYS[2], id) end
return id
"""


class RedisStreamEventLog:
    """A Redis stream of JSON records; see the module docstring for its durability."""

    def __init__(self, client: Any, *, stream: str = "rg:events", user_index_prefix: str = "rg:events:user:") -> None:
        self.client = client  # a redis.asyncio.Redis
        self.stream = stream
        self.user_index_prefix = user_index_prefix
        self._xadd = client.register_script(_XADD_INDEXED)

    async def append(self, record: dict[str, Any], *, wait: bool = True) -> None:
        """`XADD`; returns once Redis has the entry (`wait` is accepted for interface parity)."""
        import redis.exceptions

        user_id = record.get("user_id") or ""
        try:
            await self._xadd(
                keys=[self.stream, self.user_index_prefix + user_id],
                args=[json.dumps(record, separators=(",", ":"), ensure_ascii=False), user_id],
            )
        except redis.exceptions.RedisError as exc:
            raise EventLogUnavailable(f"the event stream could not be written: {exc}") from exc

    async def flush(self) -> None:
        return None

    async def records(self, batch: int = 1000) -> AsyncIterator[dict[str, Any]]:
        start = "-"
        while True:
            entries = await self.client.xrange(self.stream, min=start, max="+", count=batch)
            for entry_id, fields in entries:
                raw = fields.get(b"r", fields.get("r"))
                try:
                    record = json.loads(raw)
                except (TypeError, json.JSONDecodeError):
                    log.warning("stream %s entry %s: not a JSON record", self.stream, entry_id)
                    continue
                if isinstance(record, dict):
                    yield record
            if len(entries) < batch:
                return
            last = entries[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else last)

    async def erase_user(self, user_id: str) -> int:
        import redis.exceptions

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

    async def durability(self) -> str:
        """What this Redis server's persistence settings promise for an acknowledged entry."""
        try:
            conf = await self.client.config_get("append*")
        except Exception as exc:  # noqa: BLE001 - CONFIG is often disabled on managed Redis
            return f"unknown (CONFIG GET refused: {exc})"

        def text(v: Any) -> str:
            return v.decode() if isinstance(v, bytes) else str(v)

        conf = {text(k): text(v) for k, v in conf.items()}
        if conf.get("appendonly") != "yes":
            return "appendonly=no: entries survive a gateway crash, not a Redis restart beyond the last RDB snapshot"
        return f"appendonly=yes appendfsync={conf.get('appendfsync')}: entries survive a Redis restart"

    async def close(self) -> None:
        return None
