"""The default event log: JSON lines in numbered segment files (`events-000001.jsonl`, ...), a
new segment once one passes `max_bytes`.

Appends are group-committed: every record queued while one write+fdatasync is in flight goes into
the next single write+fdatasync, and `await append(record)` returns only once the fdatasync
covering that record has returned, so an acknowledged event survives a crash of the process (and,
with fsync on, of the machine). One process owns a log directory (an exclusive `flock`); several
gateway processes need one directory each, or the Redis backend. `erase_user` rewrites each
affected segment to a temporary file, fsyncs it and renames it over the original.
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
from typing import Any

from ranking_gateway.core.config import PersonalizationSettings
from ranking_gateway.personalization.event_log import EventLogUnavailable, dumps_record, loads_record

log = logging.getLogger(__name__)

SEGMENT_RE = re.compile(r"^events-(\d{6,})\.jsonl$")


class EventLogLocked(Exception):
    """Another process owns this JSONL log directory."""


def _lock(directory: Path) -> int:
    """The directory's lock, held exclusively through the returned fd (closing it releases it);
    `EventLogLocked` when another process holds it."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise EventLogLocked(
            f"{directory}: the event log is in use by another process (one gateway per log directory; "
            "several gateways need one each, or --redis-url)"
        ) from None
    return fd


def ensure_not_owned(directory: Path) -> None:
    """`EventLogLocked` now if another process owns `directory`: `serve` asks before it starts
    Triton, so a second gateway on the same log stops with one line instead of a failed startup."""
    if (directory / ".lock").exists():
        os.close(_lock(directory))


def segment_paths(directory: Path) -> list[Path]:
    """The segment files of a log directory, oldest first."""
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := SEGMENT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every record of a log file, or of all segments of a log directory in order. A line that is
    not a JSON object (the torn tail of a crashed writer, never acknowledged) is skipped with a
    warning."""
    path = Path(path)
    files = segment_paths(path) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                record = loads_record(line)
                if record is None:
                    log.warning("%s:%d: skipping a line that is not a JSON record", file, number)
                    continue
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

    def __init__(
        self,
        directory: str | Path,
        *,
        max_bytes: int = PersonalizationSettings.event_log_max_bytes,
        fsync: bool = PersonalizationSettings.event_log_fsync,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock_fd = _lock(self.directory)
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
        self._pending.append(((dumps_record(record) + "\n").encode("utf-8"), future))
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
        needle = json.dumps(user_id, ensure_ascii=False).encode("utf-8")  # a cheap pre-filter per segment
        removed = 0
        for path in segment_paths(self.directory):
            data = path.read_bytes()
            if needle not in data:
                continue
            kept: list[bytes] = []
            dropped = 0
            for line in data.splitlines(keepends=True):
                record = loads_record(line)
                if record is not None and record.get("user_id") == user_id:
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

    async def describe(self) -> str:
        sync = "fdatasync before each acknowledgement" if self.fsync else "no fsync: survives a gateway crash only"
        return f"JSON lines in {self.directory} ({sync})"

    async def close(self) -> None:
        await self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
