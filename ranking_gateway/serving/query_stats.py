"""Which searches are hot right now: exact counts over a sliding window of the last `window`
searches, in memory bounded by the window (a deque of keys and a counter over exactly them).

Why: a live swap (`deploy --warm N`) fills the new version's hot-query cache with the N most
frequent recent searches before it switches, so the first requests after the switch hit the cache
as they did before it, instead of all missing at once. A window rather than all-time counts: what
was hot an hour ago is not what the next minute asks. Only the cache-relevant shape of a request
is kept (query, candidates, rerank, first stage): no user id.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from ranking_gateway.core.config import RetrievalMode
from ranking_gateway.serving.schemas import SearchRequest


@dataclass(frozen=True, slots=True)
class QueryShape:
    query: str
    candidates: int
    rerank: bool
    retrieval: RetrievalMode | None

    def request(self, k: int) -> SearchRequest:
        return SearchRequest(self.query, min(k, self.candidates), self.candidates, self.rerank, None, self.retrieval)


class RecentQueries:
    def __init__(self, window: int = 10_000) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self._order: deque[QueryShape] = deque()
        self._counts: Counter[QueryShape] = Counter()

    def __len__(self) -> int:
        return len(self._order)

    def record(self, request: SearchRequest) -> None:
        shape = QueryShape(" ".join(request.query.split()), request.candidates, request.rerank, request.retrieval)
        self._order.append(shape)
        self._counts[shape] += 1
        if len(self._order) > self.window:
            old = self._order.popleft()
            self._counts[old] -= 1
            if self._counts[old] <= 0:
                del self._counts[old]

    def top(self, n: int) -> list[QueryShape]:
        """The `n` most frequent shapes in the window, the most frequent first (ties: most recent first seen)."""
        return [shape for shape, _ in self._counts.most_common(n)] if n > 0 else []
