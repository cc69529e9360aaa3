"""Wiring personalisation into the gateway: the stores chosen from the settings, the startup
(profile rebuild from the JSONL log, or a Redis durability report), and the adapter that plays
the search pipeline's `Personalizer` role on the cached candidates."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ranking_gateway.core.config import GatewaySettings
from ranking_gateway.personalization.event_log import EventLog, JsonlEventLog, RedisStreamEventLog
from ranking_gateway.personalization.profiles import InMemoryProfileStore, ProfileStore, RedisProfileStore
from ranking_gateway.personalization.scorer import PersonalScorer
from ranking_gateway.personalization.service import Personalizer
from ranking_gateway.serving.index import DocumentIndex
from ranking_gateway.serving.search import Candidate, ScoredCandidate

log = logging.getLogger(__name__)


def event_log_dir(settings: GatewaySettings) -> Path:
    if settings.personalization.event_log is not None:
        return settings.personalization.event_log
    artifacts = settings.artifacts.resolve()
    return artifacts.with_name(artifacts.name + "-events")


class Personalization:
    """The personalisation side of one gateway process."""

    def __init__(self, settings: GatewaySettings, index: DocumentIndex, redis_client: Any | None) -> None:
        ps = settings.personalization
        self.index = index
        event_log: EventLog
        store: ProfileStore
        if redis_client is not None:
            store = RedisProfileStore(redis_client, half_life_s=ps.half_life_s, max_recent=ps.max_recent)
            event_log = RedisStreamEventLog(redis_client)
        else:
            store = InMemoryProfileStore(half_life_s=ps.half_life_s, max_recent=ps.max_recent)
            event_log = JsonlEventLog(event_log_dir(settings), max_bytes=ps.event_log_max_bytes, fsync=ps.event_log_fsync)
        self.service = Personalizer(
            embeddings=index.embeddings,
            doc_index=index.row_of,
            store=store,
            event_log=event_log,
            scorer=PersonalScorer.load(ps.weights) if ps.weights else PersonalScorer(),
            log_impressions=ps.log_impressions,
        )

    async def start(self) -> None:
        log_ = self.service.event_log
        if isinstance(log_, JsonlEventLog):
            replayed = await self.service.rebuild_profiles()
            log.info("event log %s: %d events replayed into the in-process profiles", log_.directory, replayed)
        elif isinstance(log_, RedisStreamEventLog):
            log.info("event stream durability: %s", await log_.durability())

    async def close(self) -> None:
        await self.service.event_log.close()
        await self.service.store.close()

    async def personalize(
        self, user_id: str, candidates: Sequence[Candidate], request_id: str, k: int, query: str | None = None
    ) -> list[ScoredCandidate] | None:
        """The search pipeline's hook: None keeps the non-personalised ranking."""
        result = await self.service.personalize(
            user_id=user_id,
            request_id=request_id,
            doc_ids=[self.index.documents[c.row].id for c in candidates],
            primary=[c.base_score for c in candidates],
            retrieval=[c.retrieval_score for c in candidates],
            k=k,
            query=query,
        )
        if result is None:
            return None
        return [ScoredCandidate(candidates[i], score) for i, score in zip(result.order, result.scores)]
