"""What Triton adds: the same model, runtime and inputs called in-process in a bare loop, and
through Triton with the gateway's own client, at several concurrencies.

The bare loop is what a hand-written service does: each request is one forward pass of the
model's CPU runtime (`cpu_runtime.CpuModel`, the very code the Triton model runs), in as many
threads as there are concurrent requests. Through Triton, the same requests go out as the
gateway sends them (`TritonModels`, chunks of `--chunk-size` rows) and the dynamic batcher may
merge concurrent ones. Requests are real: (query, document) pairs of the corpus for a
cross-encoder (`--pairs` per request, the rerank depth), single queries for the query-side models.

    python bench/triton_overhead.py --artifacts runs/scifact-art --model query_token_encoder \\
        --out bench/results/triton_overhead/scifact_query_token_encoder.json      # + .png
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.contract import DOCUMENT_TOKENS, ENCODER, QUERY_TOKENS, RERANKER, ModelContract
from ranking_gateway.serving.index import DocumentIndex
from ranking_gateway.serving.tokenization import TextTokenizer, TokenBatch
from ranking_gateway.serving.triton_client import TritonModels
from ranking_gateway.serving.triton_server import EmbeddedTriton

CONTRACTS = {c.name: c for c in (ENCODER, RERANKER, QUERY_TOKENS, DOCUMENT_TOKENS)}


def requests_of(paths: ArtifactPaths, contract: ModelContract, max_length: int, n: int, pairs: int) -> list[TokenBatch]:
    """`n` distinct requests, tokenised as the gateway tokenises them."""
    index = DocumentIndex(paths)
    docs = index.documents
    tokenizer = TextTokenizer(paths.tokenizer(contract.name), max_length)
    queries = [d.title or d.text[:80] for d in docs]
    if contract is RERANKER:
        return [
            tokenizer.encode_pairs(queries[i % len(docs)], [docs[(i * pairs + j) % len(docs)].full_text for j in range(pairs)])
            for i in range(n)
        ]
    texts = [d.full_text for d in docs] if contract is DOCUMENT_TOKENS else queries
    return [tokenizer.encode([texts[i % len(texts)]]) for i in range(n)]


def load_model(paths: ArtifactPaths, contract: ModelContract, config: dict) -> Any:
    """The Triton model's own `CpuModel`, loaded in this process from its version directory."""
    version = paths.model_repository / contract.name / "1"
    sys.path.insert(0, str(version))
    spec = importlib.util.spec_from_file_location(f"bench_model_{contract.name}", version / "model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from cpu_runtime import CpuModel  # noqa: E402  (beside model.py, as Triton finds it)

    python_model = module.TritonPythonModel
    return CpuModel(version, config, python_model.load_torch, python_model.forward)


def threads_of(config: dict) -> int:
    """What the served runtime makes of a config's instances and threads (cpu_runtime.py)."""
    import cpu_runtime  # noqa: E402  (on sys.path once load_model ran)

    if hasattr(cpu_runtime, "threads_per_instance"):
        return cpu_runtime.threads_per_instance(config)
    threads = config.get("parameters", {}).get("threads", {}).get("string_value") or "0"
    return int(threads) or (os.cpu_count() or 1)  # builds before it: every instance on all cores


def fields(batch: TokenBatch, contract: ModelContract) -> dict[str, np.ndarray]:
    return {name: getattr(batch, name) for name in contract.inputs}


def bare_loop(model: Any, contract: ModelContract, requests: list[TokenBatch], concurrency: int, seconds: float) -> dict:
    """Closed loop: `concurrency` threads, each one forward pass per request, for `seconds`."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        i = offset
        while time.perf_counter() < stop:
            started = time.perf_counter()
            model.run(fields(requests[i % len(requests)], contract))
            with lock:
                latencies.append((time.perf_counter() - started) * 1e3)
            i += concurrency

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(latencies, time.perf_counter() - started)


async def through_triton(
    url: str, contract: ModelContract, requests: list[TokenBatch], concurrency: int, seconds: float, chunk: int
) -> dict:
    """Closed loop: `concurrency` tasks sending requests as the gateway does, for `seconds`."""
    models = TritonModels(url, timeout_s=120, chunk_size=chunk)
    call: Callable[[TokenBatch], Any] = {
        RERANKER.name: models.rerank, ENCODER.name: models.encode,
        QUERY_TOKENS.name: models.encode_tokens, DOCUMENT_TOKENS.name: models.encode_documents,
    }[contract.name]
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        i = offset
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await call(requests[i % len(requests)])
            latencies.append((time.perf_counter() - started) * 1e3)
            i += concurrency

    try:
        await call(requests[0])  # the channel connected
        before = await server_times(models, contract.name)
        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        result = summary(latencies, time.perf_counter() - started)
        await asyncio.sleep(0.2)  # Triton records a request's statistics after its response
        after = await server_times(models, contract.name)
        return {**result, "server_ms_per_request": per_request_ms(before, after)}
    finally:
        await models.close()


STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


async def server_times(models: TritonModels, name: str) -> dict[str, int]:
    """Triton's cumulative counters for `name`: requests, executions, and ns spent in each stage."""
    stats = (await models.inference_statistics(name))["model_stats"][0]
    infer = stats["inference_stats"]
    times = {stage: int(infer.get(stage, {}).get("ns", 0)) for stage in STAGES}
    return {**times, "requests": int(infer.get("success", {}).get("count", 0)),
            "executions": int(stats.get("execution_count", 0))}


def per_request_ms(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Where a request's time went inside Triton (the rest of its latency is the client and gRPC),
    and how many requests an execution merged."""
    requests = max(1, after["requests"] - before["requests"])
    split = {stage: (after[stage] - before[stage]) / requests / 1e6 for stage in STAGES}
    executions = max(1, after["executions"] - before["executions"])
    return {**split, "requests_per_execution": requests / executions}


def summary(latencies: list[float], wall_s: float) -> dict:
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"requests": len(latencies), "per_s": len(latencies) / wall_s, "p50_ms": float(p50), "p99_ms": float(p99)}


async def triton_config(url: str, name: str) -> dict:
    models = TritonModels(url, timeout_s=30, chunk_size=1)
    try:
        return (await models._client.get_model_config(name, as_json=True))["config"]
    finally:
        await models.close()


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [r["concurrency"] for r in report["runs"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(len(levels))
    ax.bar(x - 0.2, [r["bare"]["per_s"] for r in report["runs"]], 0.4, label="in-process bare loop")
    ax.bar(x + 0.2, [r["triton"]["per_s"] for r in report["runs"]], 0.4, label="through Triton (gateway client)")
    for i, r in enumerate(report["runs"]):
        ax.annotate(f"{r['triton_over_bare']:.2f}×", (i + 0.2, r["triton"]["per_s"]), ha="center", va="bottom", fontsize=8)
    ax.set(xticks=x, xticklabels=[str(c) for c in levels], xlabel="concurrent requests", ylabel="requests/s",
           title=f"{report['model']} ({report['runtime']}): what Triton adds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, required=True)
    p.add_argument("--model", choices=sorted(CONTRACTS), default=RERANKER.name)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--seconds", type=float, default=15.0, help="per concurrency and path")
    p.add_argument("--pairs", type=int, default=30, help="cross-encoder: pairs per request (the rerank depth)")
    p.add_argument("--chunk-size", type=int, default=16, help="rows per Triton request (serve --rerank-chunk-size)")
    p.add_argument("--requests", type=int, default=64, help="distinct requests cycled through")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    paths = ArtifactPaths(args.artifacts)
    manifest = Manifest.read(paths.root)
    contract = CONTRACTS[args.model]
    entry = {ENCODER.name: manifest.encoder, DOCUMENT_TOKENS.name: manifest.document_token_encoder}.get(
        contract.name, manifest.reranker
    )
    if entry is None or not (paths.model_repository / contract.name).is_dir():
        raise SystemExit(f"{args.artifacts} has no {contract.name} model")
    requests = requests_of(paths, contract, entry.max_length, args.requests, args.pairs)
    runs = []
    with EmbeddedTriton(paths.model_repository) as triton:
        config = asyncio.run(triton_config(triton.grpc_url, contract.name))
        # the bare loop is one copy of the model on all cores, as a hand-written service runs it;
        # Triton runs the config's instances, each on its share of the cores
        model = load_model(paths, contract, {**config, "instance_group": [{"count": 1}]})
        for level in args.concurrency:
            bare = bare_loop(model, contract, requests, level, args.seconds)
            triton_run = asyncio.run(through_triton(triton.grpc_url, contract, requests, level, args.seconds, args.chunk_size))
            ratio = triton_run["per_s"] / bare["per_s"]
            runs.append({"concurrency": level, "bare": bare, "triton": triton_run, "triton_over_bare": ratio})
            inside = triton_run["server_ms_per_request"]
            print(f"c={level}: bare {bare['per_s']:.1f}/s p50 {bare['p50_ms']:.1f} ms | triton {triton_run['per_s']:.1f}/s "
                  f"p50 {triton_run['p50_ms']:.1f} ms | ratio {ratio:.2f} | in Triton per request: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in inside.items()), flush=True)
    report = {
        "artifacts": str(args.artifacts), "model": contract.name, "runtime": model.runtime,
        "triton_instances": [{k: g.get(k) for k in ("count", "kind")} for g in config.get("instance_group", [])],
        "triton_threads_per_instance": threads_of(config), "bare_threads": threads_of({}),
        "max_length": entry.max_length, "pairs_per_request": args.pairs if contract is RERANKER else None,
        "chunk_size": args.chunk_size, "seconds": args.seconds, "runs": runs,
        "median_ratio": statistics.median(r["triton_over_bare"] for r in runs),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
