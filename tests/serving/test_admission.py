"""The admission gate on its own: slots, the bounded queue, refusals, and slots never leaking."""

from __future__ import annotations

import asyncio

import pytest

from ranking_gateway.core.config import AdmissionSettings
from ranking_gateway.serving.admission import AdmissionGate, Overloaded


async def hold(gate: AdmissionGate, release: asyncio.Event, order: list[int], n: int, timeout_s: float | None = None) -> None:
    async with gate.admit(timeout_s):
        order.append(n)
        await release.wait()


def test_in_flight_then_queued_then_refused_at_once() -> None:
    async def scenario() -> None:
        gate = AdmissionGate(AdmissionSettings(max_inflight=2, max_queue=1))
        release, order = asyncio.Event(), []
        tasks = [asyncio.create_task(hold(gate, release, order, n)) for n in range(3)]
        await asyncio.sleep(0.01)
        assert (gate.inflight, gate.queued, order) == (2, 1, [0, 1])
        with pytest.raises(Overloaded) as refused:
            async with gate.admit():
                pass
        assert refused.value.retry_after_s >= 1
        release.set()
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2] and (gate.inflight, gate.queued) == (0, 0)

    asyncio.run(scenario())


def test_the_queue_is_first_come_first_served() -> None:
    async def scenario() -> None:
        gate = AdmissionGate(AdmissionSettings(max_inflight=1, max_queue=5))
        order: list[int] = []

        async def short(n: int) -> None:
            async with gate.admit():
                order.append(n)
                await asyncio.sleep(0.001)

        await asyncio.gather(*(short(n) for n in range(6)))
        assert order == list(range(6)) and gate.inflight == 0

    asyncio.run(scenario())


def test_a_wait_past_its_deadline_is_refused_and_frees_its_place() -> None:
    async def scenario() -> None:
        gate = AdmissionGate(AdmissionSettings(max_inflight=1, max_queue=1))
        release, order = asyncio.Event(), []
        first = asyncio.create_task(hold(gate, release, order, 0))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded, match="deadline"):
            async with gate.admit(timeout_s=0.02):
                pass
        assert gate.queued == 0  # its place in the queue is free again
        release.set()
        await first
        async with gate.admit(timeout_s=0.1):  # and the slot was not leaked
            assert gate.inflight == 1
        assert gate.inflight == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_neither_runs_nor_leaks_a_slot() -> None:
    async def scenario() -> None:
        gate = AdmissionGate(AdmissionSettings(max_inflight=1, max_queue=2))
        release, order = asyncio.Event(), []
        first = asyncio.create_task(hold(gate, release, order, 0))
        await asyncio.sleep(0.01)
        waiting = asyncio.create_task(hold(gate, release, order, 1))  # a client that goes away
        await asyncio.sleep(0.01)
        waiting.cancel()
        release.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert order == [0] and (gate.inflight, gate.queued) == (0, 0)

    asyncio.run(scenario())


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        AdmissionSettings(max_inflight=0)
