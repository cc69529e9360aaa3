"""`Personalization`: the one boundary the gateway calls. It ties the event log, the profile
store and the scorer to the loaded index, and works on index rows (`embeddings[row]` is document
`doc_ids[row]`); document ids appear only where they leave the process (log records, profiles).

* `record(event)`: append durably to the log, then update the profile, in that order, so an
  unpersisted event changes nothing and an acknowledged one is in the log.
* `personalize(...)`: the per-user step after the cache: re-score the cached, user-independent
  candidates and log the impression; a user without a profile gets `None` back and keeps exactly
  the non-personalised ranking.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ranking_gateway.core.config import PersonalizationSettings
from ranking_gateway.personalization.event_log import EventLog
from ranking_gateway.personalization.events import Event
from ranking_gateway.personalization.jsonl_log import JsonlEventLog
from ranking_gateway.personalization.memory_store import InMemoryProfileStore
from ranking_gateway.personalization.profiles import ProfileStore
from ranking_gateway.personalization.scorer import PersonalScorer, candidate_features

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Personalized:
    """The personalised ranking of one candidate list: `order` indexes the given rows (best
    first, cut to k), `scores` are the matching sigma(W^T f) scores."""

    order: list[int]
    scores: list[float]


def scorer_for(settings: PersonalizationSettings) -> PersonalScorer:
    """The weights of `settings.weights` (else the defaults) with the settings' protected head."""
    scorer = PersonalScorer.load(settings.weights) if settings.weights else PersonalScorer()
    return replace(scorer, protect_head_z=settings.protect_head_z)  # validated as the constructor does


class Personalization:
    """The personalisation side of one gateway process; `open` picks its backends."""

    def __init__(
        self,
        *,
        embeddings: np.ndarray,
        doc_ids: Sequence[str],
        store: ProfileStore,
        event_log: EventLog,
        scorer: PersonalScorer | None = None,
        log_impressions: bool = True,
    ) -> None:
        if embeddings.ndim != 2 or embeddings.shape[0] != len(doc_ids):
            raise ValueError("embeddings must be [n_docs, dim] with one row per document id")
        self.embeddings = embeddings
        self.doc_ids = doc_ids
        self.row_of = {doc_id: row for row, doc_id in enumerate(doc_ids)}
        self.store = store
        self.event_log = event_log
        self.scorer = scorer or PersonalScorer()
        self.log_impressions = log_impressions

    @classmethod
    def open(
        cls,
        settings: PersonalizationSettings,
        event_log_dir: Path,
        embeddings: np.ndarray,
        doc_ids: Sequence[str],
        redis_client: Any | None = None,
    ) -> Personalization:
        """The backends `settings` ask for: with a `redis.asyncio.Redis`, profiles and the event
        stream in Redis (shared by gateways); without, in-process profiles and the JSONL log."""
        store: ProfileStore
        event_log: EventLog
        if redis_client is not None:
            from ranking_gateway.personalization.redis_store import RedisProfileStore
            from ranking_gateway.personalization.redis_stream_log import RedisStreamEventLog

            store = RedisProfileStore(redis_client, half_life_s=settings.half_life_s, max_recent=settings.max_recent)
            event_log = RedisStreamEventLog(redis_client, max_len=settings.event_stream_max_len)
        else:
            store = InMemoryProfileStore(half_life_s=settings.half_life_s, max_recent=settings.max_recent)
            event_log = JsonlEventLog(
                event_log_dir, max_bytes=settings.event_log_max_bytes, fsync=settings.event_log_fsync
            )
        return cls(
            embeddings=embeddings,
            doc_ids=doc_ids,
            store=store,
            event_log=event_log,
            scorer=scorer_for(settings),
            log_impressions=settings.log_impressions,
        )

    async def start(self) -> None:
        """Log what an acknowledged event promises; fill a store that does not outlive the
        process from the log."""
        log.info("event log: %s", await self.event_log.describe())
        if not self.store.persistent:
            log.info("%d events replayed into the in-process profiles", await self.replay())

    async def close(self) -> None:
        await self.event_log.close()
        await self.store.close()

    def has_document(self, doc_id: str) -> bool:
        return doc_id in self.row_of

    async def record(self, event: Event) -> dict[str, float]:
        """Raises `EventLogUnavailable` (nothing acknowledged) or `ProfileStoreUnavailable` (the
        event is in the log). Returns the milliseconds each step took (the route sends them as
        `Server-Timing`, so a client can see where an event's latency goes)."""
        started = time.perf_counter()
        await self.event_log.append(event.to_record())
        logged = time.perf_counter()
        await self._apply(event)
        return {"log": (logged - started) * 1e3, "profile": (time.perf_counter() - logged) * 1e3}

    async def _apply(self, event: Event) -> None:
        await self.store.update(
            event.user_id,
            doc_id=event.doc_id,
            type=event.type,
            weight=event.weight,
            ts=event.ts,
            embedding=self.embeddings[self.row_of[event.doc_id]],
        )

    async def replay(self) -> int:
        """Apply the log's events to the store (after a restart, into the empty in-process one);
        events of documents no longer in the index are skipped. Returns the number applied."""
        replayed = 0
        async for record in self.event_log.records():
            if record.get("kind") == "event" and record.get("doc_id") in self.row_of:
                await self._apply(Event.from_record(record))
                replayed += 1
        return replayed

    async def profile(self, user_id: str, *, nearest: int = 5) -> dict[str, Any] | None:
        """What the system believes about the user, or None without a profile."""
        profile = await self.store.get(user_id)
        if profile is None:
            return None
        out = profile.to_json(time.time(), self.store.half_life_s)
        centroid = profile.centroid()
        out["nearest_documents"] = []
        if centroid is not None and nearest > 0:
            sims = self.embeddings @ centroid
            top = np.argpartition(-sims, min(nearest, len(sims) - 1))[:nearest]
            out["nearest_documents"] = [
                {"doc_id": self.doc_ids[i], "similarity": float(sims[i])} for i in top[np.argsort(-sims[top])]
            ]
        return out

    async def erase(self, user_id: str) -> dict[str, Any]:
        """Delete the profile and the user's records from the live event log."""
        deleted = await self.store.delete(user_id)
        removed = await self.event_log.erase_user(user_id)
        return {"user_id": user_id, "profile_deleted": deleted, "records_removed": removed}

    async def personalize(
        self,
        user_id: str,
        rows: np.ndarray,
        base_scores: np.ndarray,
        retrieval_scores: np.ndarray,
        *,
        request_id: str,
        k: int,
        query: str,
        head: int | None = None,
    ) -> Personalized | None:
        """Re-rank the cached candidates (`rows`, user-independent order) for `user_id`. Returns
        None -- keep the non-personalised ranking -- without a profile; raises
        `ProfileStoreUnavailable` when the store cannot be read (the caller answers the
        non-personalised ranking, degraded). Logs the impression (the top k shown, with their
        features, and the query: reranker supervision too) without waiting for its fsync.
        `head`: how many leading rows the reranker scored, the scale `primary` is z-scored on
        (None: no reranker ran, the scorer's `z_head`)."""
        profile = await self.store.get(user_id)
        feats = candidate_features(
            profile,
            rows=rows,
            embeddings=self.embeddings,
            row_of=self.row_of,
            primary=base_scores,
            retrieval=retrieval_scores,
            now=time.time(),
            recency_half_life_s=self.scorer.recency_half_life_s,
            expansion=self.scorer.profile_expansion,
            expansion_steps=self.scorer.expansion_steps,
            head=head if head is not None else self.scorer.z_head,
        )
        if profile is None:
            shown = list(range(min(k, len(rows))))
            result = None
        else:
            order, scores = self.scorer.rank(feats)
            shown = [int(i) for i in order[:k]]
            result = Personalized(order=shown, scores=[float(scores[i]) for i in shown])
        if self.log_impressions:
            await self._log_impression(
                {
                    "kind": "impression",
                    "request_id": request_id,
                    "user_id": user_id,
                    "ts": time.time(),
                    "personalized": result is not None,
                    "doc_ids": [self.doc_ids[rows[i]] for i in shown],
                    "features": np.round(feats[shown], 6).tolist(),
                    "query": query,
                }
            )
        return result

    async def _log_impression(self, record: dict[str, Any]) -> None:
        try:
            await self.event_log.append(record, wait=False)
        except Exception as exc:  # noqa: BLE001 - an impression lost must not fail the search
            log.warning("impression of request %s not logged: %s", record["request_id"], exc)
