"""Sending a split's queries through a running gateway's `POST /v1/search`, with bounded concurrency."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx

from ranking_gateway.core.errors import CliError


@dataclass(slots=True)
class ModeResult:
    """Everything measured for one setting (reranking on or off) over all queries."""

    rerank: bool
    run: dict[str, dict[str, float]] = field(default_factory=dict)  # query id -> {doc id -> rank score}
    client_ms: list[float] = field(default_factory=list)
    server_ms: dict[str, list[float]] = field(default_factory=dict)  # stage -> per-query timings_ms
    cached: int = 0
    degraded: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


def rank_scores(results: list[dict]) -> dict[str, float]:
    """Scores that reproduce the gateway's order exactly (its own scores may tie or be mixed-scale)."""
    n = len(results)
    return {str(r["id"]): float(n - i) for i, r in enumerate(results)}


async def run_mode(
    url: str,
    queries: dict[str, str],
    *,
    rerank: bool,
    k: int,
    candidates: int,
    concurrency: int,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
    progress: bool = False,
    retrieval: str | None = None,
) -> ModeResult:
    endpoint = url.rstrip("/") + "/v1/search"
    out = ModeResult(rerank=rerank)
    sem = asyncio.Semaphore(concurrency)

    from tqdm import tqdm

    bar = tqdm(total=len(queries), desc=f"rerank {'on' if rerank else 'off'}", unit="q", disable=not progress)

    async def one(client: httpx.AsyncClient, qid: str, text: str) -> None:
        try:
            await _one(client, qid, text)
        finally:
            bar.update()

    async def _one(client: httpx.AsyncClient, qid: str, text: str) -> None:
        async with sem:
            body = {"query": text, "k": k, "candidates": candidates, "rerank": rerank}
            if retrieval is not None:
                body["retrieval"] = retrieval
            t0 = time.perf_counter()
            try:
                resp = await client.post(endpoint, json=body)
            except httpx.HTTPError as exc:
                out.errors[qid] = f"{type(exc).__name__}: {exc}"
                return
            elapsed = (time.perf_counter() - t0) * 1000
        if resp.status_code != 200:
            out.errors[qid] = f"HTTP {resp.status_code}: {resp.text[:200]}"
            return
        data = resp.json()
        out.run[qid] = rank_scores(data.get("results", []))
        out.client_ms.append(elapsed)
        for stage, ms in (data.get("timings_ms") or {}).items():
            out.server_ms.setdefault(stage, []).append(float(ms))
        out.cached += bool(data.get("cached"))
        out.degraded += bool(data.get("degraded"))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits, transport=transport) as client:
        await asyncio.gather(*(one(client, qid, text) for qid, text in queries.items()))
    out.wall_s = time.perf_counter() - started
    bar.close()
    return out


def check_reachable(url: str, timeout_s: float = 10.0) -> None:
    """Fail with one clear line before sending hundreds of queries to nothing."""
    try:
        httpx.post(url.rstrip("/") + "/v1/search", json={"query": "ping", "k": 1, "candidates": 1}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise CliError(f"{url}: the gateway does not answer ({type(exc).__name__}: {exc})") from None


def gateway_config(url: str, timeout_s: float = 10.0) -> dict:
    """What the gateway says it serves (`/readyz`: retrieval mode, reranker alpha/depth/length),
    recorded with every evaluation so a number always names its configuration."""
    try:
        body = httpx.get(url.rstrip("/") + "/readyz", timeout=timeout_s).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return {k: body.get(k) for k in ("version", "documents", "retrieval", "rerank") if k in body}
