"""The learner's state: one small JSON file in `learn --workdir`.

It holds the cursor into the event log (the timestamp of the newest impression a round has
consumed: the next round learns from the impressions logged after it) and the history of
rounds and deployed versions (their weights files stay in the workdir: any of them can be
deployed again by hand). The file is replaced atomically, and a lock file keeps two rounds (a
slow one and the next cron tick) from running on one workdir at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ranking_gateway.core.errors import CliError

STATE_FILE = "state.json"
LOCK_FILE = ".lock"
FORMAT = 1


@dataclass
class LearnState:
    path: Path
    cursor_ts: float | None = None  # newest impression timestamp consumed; None: nothing yet
    runs: list[dict[str, Any]] = field(default_factory=list)  # every round, oldest first
    versions: list[dict[str, Any]] = field(default_factory=list)  # every deployed weights file, oldest first
    # the reranker's judged NDCG@10 before the first round that learnt it ({judged, ndcg}): later
    # candidates must not fall below it by more than the margin, so small losses cannot add up
    reranker_reference: dict[str, Any] | None = None

    @classmethod
    def load(cls, workdir: Path) -> LearnState:
        path = Path(workdir) / STATE_FILE
        if not path.exists():
            return cls(path=path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            if obj.get("format") != FORMAT:
                raise ValueError(f"unknown format {obj.get('format')!r}")
            cursor = obj.get("cursor", {}).get("ts")
            return cls(
                path=path,
                cursor_ts=None if cursor is None else float(cursor),
                runs=list(obj.get("runs", [])),
                versions=list(obj.get("versions", [])),
                reranker_reference=obj.get("reranker_reference"),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise CliError(f"{path}: not a learner state file ({exc})") from None

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "cursor": {"ts": self.cursor_ts}, "versions": self.versions, "runs": self.runs,
                "reranker_reference": self.reranker_reference}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(self.to_json(), indent=2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    @property
    def next_round(self) -> int:
        return len(self.runs) + 1

    @property
    def next_version(self) -> int:
        return max((int(v["version"]) for v in self.versions), default=0) + 1

    @property
    def deployed(self) -> dict[str, Any] | None:
        """The last version this learner deployed (the gateway may have been rolled back since)."""
        return self.versions[-1] if self.versions else None


@contextlib.contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """Hold the workdir's lock for one round; a `CliError` when another round holds it."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(f"{workdir}: another `learn` round is running on this workdir") from None
        yield
    finally:
        os.close(fd)
