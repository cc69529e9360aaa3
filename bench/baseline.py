"""The hand-written baseline: what a user would write instead of deploying the gateway.

One process, torch fp32 on the CPU, no Triton, no HTTP: a transformers bi-encoder
(all-MiniLM-L6-v2 by default; attention-masked mean pooling + L2 norm) embeds the corpus into a
FAISS `IndexFlatIP`; per query it encodes the query, takes the FAISS top `--candidates`, scores
(query, document) pairs of the top `--depth` with a transformers cross-encoder at `--max-length`
tokens in one batch, sorts by the logit and returns the top k=10. It is deliberately plain (the
obvious code, no batching across users, no int8, no length buckets) but not careless:
`torch.inference_mode`, `torch.set_num_threads(os.cpu_count())`, the corpus embedded in
length-sorted batches, one warm-up query before anything is timed.

Queries are served closed-loop at each concurrency C of `--concurrency` (C worker threads, each
taking the next query as soon as its previous one is answered), so the numbers are comparable
with `ranking-gateway eval --concurrency C`. Per C: NDCG@10, MRR@10, p50/p99 latency (ms) and
queries/s (queries / wall seconds). One JSON (`--out`) and a PNG next to it.

`--cross-encoder untrained` builds the cross-encoder head from the bi-encoder checkpoint
(`num_labels=1`, seeded): the same compute as a trained MiniLM-L6 cross-encoder, a meaningless
NDCG; the JSON then says `"cross_encoder": "untrained (timing only)"`.

    .venv/bin/python bench/baseline.py --collection /tmp/bl/qs --split test \
        --cross-encoder runs/scifact/reranker --depth 30 --max-length 384 --concurrency 1,8 \
        --embeddings-cache /tmp/bl/qs-emb.npy --out bench/results/baseline/baseline.json [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

UNTRAINED = "untrained"
UNTRAINED_LABEL = "untrained (timing only)"
K = 10

Hits = list[tuple[str, float]]  # (doc id, score), best first


@dataclass(frozen=True)
class Settings:
    candidates: int = 100  # FAISS top-N per query
    depth: int = 30  # of those, how many the cross-encoder scores
    max_length: int = 384  # cross-encoder tokens per (query, document) pair
    query_max_length: int = 64  # bi-encoder tokens per query (the gateway build's default)
    doc_max_length: int = 256  # bi-encoder tokens per document (the gateway build's default)
    embed_batch_size: int = 64
    k: int = K


@dataclass
class ConcurrencyRun:
    """What one closed-loop pass over the queries measured."""

    concurrency: int
    run: dict[str, dict[str, float]] = field(default_factory=dict)  # query id -> {doc id -> score}
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0


# ---------------------------------------------------------------- pure helpers (tested)


def parse_concurrency(text: str) -> list[int]:
    """`"1,8"` -> `[1, 8]`; every level at least 1."""
    levels = [int(x) for x in text.split(",") if x.strip()]
    if not levels or min(levels) < 1:
        raise ValueError(f"--concurrency {text!r}: give positive integers, e.g. 1,8")
    return levels


def rank_scores(hits: Hits) -> dict[str, float]:
    """Scores that reproduce the returned order exactly (as the gateway's eval client does), so
    both systems are scored by the same rule."""
    return {doc_id: float(len(hits) - i) for i, (doc_id, _) in enumerate(hits)}


def summarize(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], latencies_ms: Sequence[float], wall_s: float
) -> dict[str, float | int | None]:
    """NDCG@10 and MRR@10 over the judged queries of `qrels` (the ones sent: a query missing from
    `run`, i.e. failed, scores 0), p50/p99 latency of the answered ones, answered queries/s."""
    from ranking_gateway.evaluation.metrics import aggregate, percentile

    metrics = aggregate(run, qrels)
    values = list(latencies_ms)
    return {
        "queries": len(run),
        "ndcg@10": round(metrics["ndcg@10"], 4),
        "mrr@10": round(metrics["mrr@10"], 4),
        "p50_ms": round(percentile(values, 50), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "qps": round(len(values) / wall_s, 3) if wall_s > 0 else None,
    }


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ---------------------------------------------------------------- the baseline itself


class Baseline:
    """Bi-encoder + FAISS + cross-encoder, all in this process."""

    def __init__(self, encoder_dir: Path, cross_encoder: str, settings: Settings) -> None:
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        self.settings = settings
        self.torch = torch
        self.enc_tok = AutoTokenizer.from_pretrained(str(encoder_dir))
        self.encoder = AutoModel.from_pretrained(str(encoder_dir)).eval()
        if cross_encoder == UNTRAINED:
            torch.manual_seed(0)  # the fresh head: same compute as a trained one, scores meaningless
            ce_dir = str(encoder_dir)
        else:
            ce_dir = cross_encoder
        self.ce_tok = AutoTokenizer.from_pretrained(ce_dir)
        self.cross = AutoModelForSequenceClassification.from_pretrained(ce_dir, num_labels=1).eval()
        self.doc_ids: list[str] = []
        self.doc_texts: list[str] = []
        self.index = None

    def embed(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        """Mean pooling over the attention mask, then L2 norm (sentence-transformers' recipe)."""
        torch = self.torch
        enc = self.enc_tok(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            hidden = self.encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()

    def embed_corpus(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np
        from tqdm import tqdm

        order = np.argsort([len(t) for t in texts])[::-1]  # similar lengths together: little padding
        out = np.zeros((len(texts), self.encoder.config.hidden_size), dtype=np.float32)
        bs = self.settings.embed_batch_size
        for start in tqdm(range(0, len(texts), bs), desc="embedding corpus", unit="batch"):
            idx = order[start : start + bs]
            out[idx] = self.embed([texts[i] for i in idx], self.settings.doc_max_length)
        return out

    def index_corpus(self, doc_ids: list[str], texts: list[str], cache: Path | None) -> dict[str, Any]:
        """Embed (or load the cache, trusted only when its row count matches) and build the index."""
        import faiss
        import numpy as np

        self.doc_ids, self.doc_texts = doc_ids, texts
        t0 = time.perf_counter()
        emb, cached = None, False
        if cache is not None and cache.is_file():
            emb = np.load(cache)
            cached = emb.shape == (len(texts), self.encoder.config.hidden_size)
            if not cached:
                print(f"{cache}: {emb.shape[0]} rows for {len(texts)} documents; re-embedding")
        if not cached:
            emb = self.embed_corpus(texts)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.save(cache, emb)
        self.index = faiss.IndexFlatIP(emb.shape[1])
        self.index.add(np.ascontiguousarray(emb, dtype=np.float32))
        return {"documents": len(texts), "embeddings_cached": cached, "index_s": round(time.perf_counter() - t0, 2)}

    def rerank(self, query: str, rows: Sequence[int]) -> list[float]:
        enc = self.ce_tok(
            [query] * len(rows), [self.doc_texts[r] for r in rows],
            padding=True, truncation=True, max_length=self.settings.max_length, return_tensors="pt",
        )
        with self.torch.inference_mode():
            return self.cross(**enc).logits[:, 0].float().tolist()

    def search(self, query: str, rerank: bool = True) -> Hits:
        s = self.settings
        qvec = self.embed([query], s.query_max_length)
        sims, idx = self.index.search(qvec, s.candidates)
        if not rerank:  # retrieval only: the FAISS order
            return [(self.doc_ids[int(r)], float(v)) for r, v in zip(idx[0][: s.k], sims[0][: s.k]) if r >= 0]
        rows = [int(r) for r in idx[0] if r >= 0][: s.depth]
        scores = self.rerank(query, rows)
        ranked = sorted(zip(rows, scores), key=lambda rs: rs[1], reverse=True)[: s.k]
        return [(self.doc_ids[r], score) for r, score in ranked]


def serve_closed_loop(
    search: Callable[[str], Hits], queries: dict[str, str], concurrency: int, label: str = "baseline"
) -> ConcurrencyRun:
    """C worker threads, each taking the next query when its previous one is answered."""
    from tqdm import tqdm

    out = ConcurrencyRun(concurrency)
    pending = iter(list(queries.items()))
    lock = threading.Lock()
    bar = tqdm(total=len(queries), desc=f"{label} c={concurrency}", unit="q")

    def worker() -> None:
        while True:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            qid, text = item
            t0 = time.perf_counter()
            hits = search(text)
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                out.run[qid] = rank_scores(hits)
                out.latencies_ms.append(ms)
                bar.update()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    out.wall_s = time.perf_counter() - started
    bar.close()
    return out


def load_queries(collection: Path, split: str, limit: int | None):
    """The collection, with its judged queries cut to the first `limit`."""
    from ranking_gateway.core.collection import load_collection

    coll = load_collection(collection, split)
    queries = dict(sorted(coll.queries.items()))  # the order `ranking-gateway eval` sends them in
    if limit:
        queries = dict(list(queries.items())[:limit])
    return coll, queries, {q: coll.qrels[q] for q in queries}


def build_baseline(args: argparse.Namespace, coll) -> tuple[Baseline, dict[str, Any]]:
    import torch

    from ranking_build.models import default_encoder_path

    torch.set_num_threads(os.cpu_count() or 1)
    encoder = Path(args.encoder) if args.encoder else default_encoder_path()
    settings = Settings(candidates=args.candidates, depth=args.depth, max_length=args.max_length,
                        query_max_length=args.query_max_length, doc_max_length=args.doc_max_length)
    t0 = time.perf_counter()
    baseline = Baseline(encoder, args.cross_encoder, settings)
    load_s = time.perf_counter() - t0
    info = baseline.index_corpus([d.id for d in coll.documents], [d.full_text for d in coll.documents],
                                 args.embeddings_cache)
    baseline.search("warm-up query")  # first-call costs (allocations, kernel selection) are not a query's
    return baseline, {"load_s": round(load_s, 2), **info, "encoder": str(encoder)}


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers

    return {
        "cross_encoder": UNTRAINED_LABEL if args.cross_encoder == UNTRAINED else str(args.cross_encoder),
        "torch": torch.__version__, "transformers": transformers.__version__, "dtype": "float32",
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "cpu": cpu_model(),
    }


def measure(baseline: Baseline, queries: dict[str, str], qrels: dict, levels: list[int]) -> dict[str, dict]:
    """Reranked at every concurrency."""
    runs = {}
    for c in levels:
        r = serve_closed_loop(baseline.search, queries, c)
        runs[str(c)] = summarize(r.run, qrels, r.latencies_ms, r.wall_s)
        print(f"baseline c={c}: {json.dumps(runs[str(c)])}")
    return runs


def measure_retrieval_only(baseline: Baseline, queries: dict[str, str], qrels: dict) -> dict[str, dict]:
    """FAISS alone at concurrency 1: what the cross-encoder costs and adds, in the same run."""
    r = serve_closed_loop(lambda q: baseline.search(q, rerank=False), queries, 1, label="baseline, no rerank")
    summary = summarize(r.run, qrels, r.latencies_ms, r.wall_s)
    print(f"baseline retrieval-only c=1: {json.dumps(summary)}")
    return {"1": summary}


def plot(runs: dict[str, dict], path: Path, title: str) -> None:
    """Left: p50 (and p99) latency per concurrency; right: queries/s per concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(runs)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    x = range(len(levels))
    b50 = ax1.bar([i - 0.2 for i in x], [runs[c]["p50_ms"] for c in levels], 0.4, label="p50")
    b99 = ax1.bar([i + 0.2 for i in x], [runs[c]["p99_ms"] for c in levels], 0.4, label="p99")
    ax1.bar_label(b50, fmt="%.0f", fontsize=8)
    ax1.bar_label(b99, fmt="%.0f", fontsize=8)
    ax1.set_xticks(list(x), [f"C={c}" for c in levels])
    ax1.set_ylabel("latency per query (ms)")
    ax1.legend()
    bq = ax2.bar(list(x), [runs[c]["qps"] or 0 for c in levels], 0.5, color="tab:green")
    ax2.bar_label(bq, fmt="%.2f", fontsize=8)
    ax2.set_xticks(list(x), [f"C={c}" for c in levels])
    ax2.set_ylabel("queries / s")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The baseline's flags (side_by_side.py adds the same ones)."""
    p.add_argument("--collection", type=Path, required=True,
                   help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="only the first N judged queries")
    p.add_argument("--encoder", default=None, help="bi-encoder directory (default all-MiniLM-L6-v2)")
    p.add_argument("--cross-encoder", required=True,
                   help=f"sequence-classification directory (1 logit), or '{UNTRAINED}' (timing only)")
    p.add_argument("--candidates", type=int, default=100, help="FAISS candidates per query")
    p.add_argument("--depth", type=int, default=30, help="candidates the cross-encoder scores")
    p.add_argument("--max-length", type=int, default=384, help="cross-encoder tokens per pair")
    p.add_argument("--query-max-length", type=int, default=64)
    p.add_argument("--doc-max-length", type=int, default=256)
    p.add_argument("--concurrency", type=parse_concurrency, default=[1, 8], help="comma-separated, e.g. 1,8")
    p.add_argument("--embeddings-cache", type=Path, default=None,
                   help="corpus embeddings .npy (reused when its row count matches the corpus)")


def check_args(args: argparse.Namespace) -> None:
    if args.depth < 1 or args.candidates < args.depth or args.candidates < K:
        raise SystemExit("need 1 <= --depth <= --candidates and --candidates >= 10")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "baseline" / "baseline.json")
    args = p.parse_args()
    check_args(args)
    coll, queries, qrels = load_queries(args.collection, args.split, args.limit)
    baseline, index_info = build_baseline(args, coll)
    report = {
        "system": "baseline: transformers + FAISS IndexFlatIP, torch fp32, one process",
        "collection": str(args.collection), "split": args.split, "queries": len(queries),
        "settings": asdict(baseline.settings), **environment(args), "index": index_info,
        "runs": measure(baseline, queries, qrels, args.concurrency),
        "retrieval_only": measure_retrieval_only(baseline, queries, qrels),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    title = f"baseline, cross-encoder: {report['cross_encoder']}, {len(queries)} queries"
    plot(report["runs"], args.out.with_suffix(".png"), title)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
