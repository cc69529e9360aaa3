"""`Personalizer`: what the gateway calls. It ties the event schema, the event log, the profile
store and the scorer to the loaded index (`embeddings [n_docs, dim]`, `doc_index` id -> row).

* `record_event(body)`: validate, append durably to the log, update the profile, in that
  order, so a refused or unpersisted event changes nothing and an acknowledged one is on disk.
* `personalize(...)`: the per-user step after the cache: re-score the cached, user-independent
  candidates and log the impression; a request without a user or for a user without a profile
  gets `None` back and keeps exactly the non-personalised ranking.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ranking_gateway.personalization.event_log import EventLog
from ranking_gateway.personalization.events import Event, parse_event, validate_user_id
from ranking_gateway.personalization.profiles import ProfileStore, UserProfile
from ranking_gateway.personalization.scorer import PersonalScorer, candidate_features

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Personalized:
    """The personalised ranking of one candidate list: `order` indexes the incoming candidates
    (best first, cut to k), `scores` are the matching sigma(W^T f) scores."""

    order: list[int]
    scores: list[float]


class Personalizer:
    def __init__(
        self,
        *,
        embeddings: np.ndarray,
        doc_index: Mapping[str, int],
        store: ProfileStore,
        event_log: EventLog,
        scorer: PersonalScorer | None = None,
        log_impressions: bool = True,
    ) -> None:
        if embeddings.ndim != 2 or embeddings.shape[0] != len(doc_index):
            raise ValueError("embeddings must be [n_docs, dim] with one row per doc_index entry")
        self.embeddings = embeddings
        self.doc_index = doc_index
        self.store = store
        self.event_log = event_log
        self.scorer = scorer or PersonalScorer()
        self.log_impressions = log_impressions
        self._row_ids = [""] * len(doc_index)
        for doc_id, row in doc_index.items():
            self._row_ids[row] = doc_id

    async def record_event(self, body: object) -> Event:
        """Raises `EventError` (4xx, nothing changed), `EventLogUnavailable` (503, nothing
        acknowledged) or `ProfileStoreUnavailable` (503; the event is in the log)."""
        event = parse_event(body, doc_exists=self.doc_index.__contains__)
        await self.event_log.append(event.to_record())
        await self._apply(event)
        return event

    async def _apply(self, event: Event) -> UserProfile:
        return await self.store.update(
            event.user_id,
            doc_id=event.doc_id,
            type=event.type,
            weight=event.weight,
            ts=event.ts,
            embedding=self.embeddings[self.doc_index[event.doc_id]],
        )

    async def rebuild_profiles(self) -> int:
        """Replay the log's events into the (empty, in-process) store after a restart; events of
        documents no longer in the index are skipped. Returns the number replayed."""
        replayed = 0
        async for record in self.event_log.records():
            if record.get("kind") != "event" or record.get("doc_id") not in self.doc_index:
                continue
            await self._apply(Event.from_record(record))
            replayed += 1
        return replayed

    async def profile(self, user_id: str, *, nearest: int = 5) -> dict[str, Any] | None:
        """What the system believes about the user, or None without a profile."""
        user_id = validate_user_id(user_id)
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
                {"doc_id": self._row_ids[i], "similarity": float(sims[i])} for i in top[np.argsort(-sims[top])]
            ]
        return out

    async def erase(self, user_id: str) -> dict[str, Any]:
        """Delete the profile and the user's records from the live event log."""
        user_id = validate_user_id(user_id)
        deleted = await self.store.delete(user_id)
        removed = await self.event_log.erase_user(user_id)
        return {"user_id": user_id, "profile_deleted": deleted, "records_removed": removed}

    async def personalize(
        self,
        *,
        user_id: str | None,
        request_id: str,
        doc_ids: Sequence[str],
        primary: Sequence[float] | np.ndarray,
        retrieval: Sequence[float] | np.ndarray,
        k: int,
        query: str | None = None,
    ) -> Personalized | None:
        """Re-rank the cached candidates for `user_id`. Returns None -- keep the non-personalised
        ranking untouched -- without a user or profile; raises `ProfileStoreUnavailable` when the
        store cannot be read (the caller answers the non-personalised ranking, degraded). Logs the
        impression (the top k shown, with their features) without waiting for its fsync."""
        if not user_id:
            return None
        profile = await self.store.get(user_id)
        rows = [self.doc_index[d] for d in doc_ids]
        feats = candidate_features(
            profile,
            doc_ids=doc_ids,
            embeddings=self.embeddings[rows],
            primary=np.asarray(primary, dtype=np.float64),
            retrieval=np.asarray(retrieval, dtype=np.float64),
            now=time.time(),
            recency_half_life_s=self.scorer.recency_half_life_s,
        )
        if profile is None:
            shown = list(range(min(k, len(doc_ids))))
            result = None
        else:
            order, scores = self.scorer.rank(feats)
            shown = [int(i) for i in order[:k]]
            result = Personalized(order=shown, scores=[float(scores[i]) for i in shown])
        if self.log_impressions:
            await self._log_impression(
                user_id, request_id, [doc_ids[i] for i in shown], feats[shown], result is not None, query
            )
        return result

    async def _log_impression(
        self, user_id: str, request_id: str, doc_ids: list[str], feats: np.ndarray, personalized: bool,
        query: str | None,
    ) -> None:
        """`query` makes the impression a reranker training example too (`train-reranker --source events`)."""
        record = {
            "kind": "impression",
            "request_id": request_id,
            "user_id": user_id,
            "ts": time.time(),
            "personalized": personalized,
            "doc_ids": doc_ids,
            "features": np.round(feats, 6).tolist(),
        }
        if query is not None:
            record["query"] = query
        try:
            await self.event_log.append(record, wait=False)
        except Exception as exc:  # noqa: BLE001 - an impression lost must not fail the search
            log.warning("impression of request %s not logged: %s", request_id, exc)

