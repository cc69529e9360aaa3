"""Admission control: a bound on rankings in flight and on the queue in front of them.

Reranking costs CPU seconds (a cross-encoder) or tens of milliseconds (late interaction); past
what the machine can do, an unbounded queue only makes every request late. The gate lets
`max_inflight` rankings run and `max_queue` wait, first come first served; the next one is
refused at once (`Overloaded`, a 429 with `Retry-After`) rather than queued behind work that
will miss its deadline anyway. It guards the cache miss only: cached answers, health checks
and events never wait behind reranking.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator

from ranking_gateway.core.config import AdmissionSettings


class Overloaded(Exception):
    """No room in flight nor in the queue (or the queue wait outlived the deadline): a 429."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AdmissionGate:
    """`async with gate.admit(timeout_s):` around the expensive part of a request."""

    def __init__(self, settings: AdmissionSettings) -> None:
        self.settings = settings
        self.inflight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._recent_s = 0.05  # moving average of a ranking's time: what Retry-After suggests

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def retry_after_s(self) -> float:
        """About how long until a slot frees: the queue drained at the measured pace."""
        return max(1.0, math.ceil((self.queued + 1) * self._recent_s / self.settings.max_inflight))

    @contextlib.asynccontextmanager
    async def admit(self, timeout_s: float | None = None) -> AsyncIterator[None]:
        await self._acquire(timeout_s)
        started = asyncio.get_running_loop().time()
        try:
            yield
        finally:
            self._recent_s = 0.8 * self._recent_s + 0.2 * (asyncio.get_running_loop().time() - started)
            self._release()

    async def _acquire(self, timeout_s: float | None) -> None:
        if self.inflight < self.settings.max_inflight and not self._waiters:
            self.inflight += 1
            return
        if len(self._waiters) >= self.settings.max_queue:
            raise Overloaded(
                f"overloaded: {self.inflight} rankings in flight and {len(self._waiters)} queued",
                self.retry_after_s(),
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over as we gave up: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise Overloaded("overloaded: no ranking slot freed before the deadline", self.retry_after_s()) from None
        # _release handed its slot to this waiter: `inflight` already counts it

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the first waiter
                return
        self.inflight -= 1


def admitted(gate: AdmissionGate | None, timeout_s: float) -> contextlib.AbstractAsyncContextManager[None]:
    """`gate.admit(timeout_s)`, or nothing to wait for without a gate: what search's ranking and
    `/v1/rerank` both enter."""
    return gate.admit(timeout_s) if gate is not None else contextlib.nullcontext()
