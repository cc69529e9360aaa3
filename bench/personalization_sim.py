"""Simulated-user benchmark of real-time personalisation.

Users have a latent interest: one topic cluster of the corpus (spherical k-means over the
document embeddings). A user's personal relevance of a document is 1 when it lies in the user's
cluster, 0 otherwise. Each user issues queries whose candidate lists hold some documents of their
cluster (but not only those), looks at the top 10 and clicks by a position-biased click model:
rank r is examined with probability 1/r^eta, an examined relevant document is clicked with
probability --p-click, an irrelevant one with --p-noise. After 0, 1, 3 and 10 clicks we measure
NDCG@10 against the user's personal relevance on held-out queries of that user (never the ones
clicked on), personalised and not.

Two modes:
* in-process (default): the real `Personalization` (event validation, JSONL event log, profile
  store, scorer) on top of a non-personalised ranking by the gateway's dense first stage, exact
  inner product over the index's embeddings (the retrieval score stands in for the reranker score);
  `--personalize-depth` of those candidates are personalised (default all `--candidates`), and
  `--protect-head-z` / `--weights` set the scorer (default: the product's defaults), `--profile-sim`,
  `--max-demotion`, `--profile-expansion`, and the v4 levers `--affinity-gate`, `--confidence-ref`,
  `--confidence-cap`, `--profile-floor-quantile`, `--max-newcomers`,
  `--keep-page-order`, `--page` override single settings of it; `--oracle-embeddings`
  (a diagnostic) lets the personaliser see each document as the one-hot vector of its cluster, so
  the profile learnt from the clicks can be exact;
* `--ranking-url http://HOST:PORT` (with the in-process mode): the non-personalised ranking is the
  served stack's instead of the exact dense one -- each query's `POST /v1/search` without a user
  (hybrid first stage, the reranker over its first `--rerank-depth`), fetched once and cached
  under `--cache-dir` -- and the personaliser gets what the gateway gives it
  (`serving.search.personalization_inputs`: every candidate, the tail's primary on the reranker's
  scale, z-scored against the reranked head); `--personalize-head-only`: what the gateway gave it
  before v5 (the reranked head alone);
* `--url http://HOST:PORT`: everything through the served gateway (`POST /v1/search` with and
  without `user_id`, `POST /v1/events`), which also measures the latency of `POST /v1/events` and
  the time from an event's acknowledgement to a search answering with the changed ranking.

Writes `--out-dir/personalization_sim[_TAG].json` and `.png` (`--no-plot`: the JSON only); every
checkpoint reports the mean per-user gain and query NDCG@10 change with their standard errors.
`--plot-frontier FILE...` plots the gain against the query NDCG@10 change after `--frontier-clicks`
clicks of result files (one point each) instead of simulating.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ranking_gateway.core import first_stage  # noqa: E402
from ranking_gateway.core.artifacts import ArtifactPaths  # noqa: E402
from ranking_gateway.core.collection import Qrels, read_qrels, read_queries  # noqa: E402
from ranking_gateway.core.contract import ENCODER  # noqa: E402
from ranking_gateway.core.corpus import read_corpus  # noqa: E402
from ranking_gateway.evaluation.metrics import ndcg_at_k  # noqa: E402
from ranking_gateway.serving.search import Candidate, personalization_inputs  # noqa: E402

CHECKPOINTS = (0, 1, 3, 10)


# ----------------------------------------------------------------------------- data


def load_index(embeddings_path: Path, documents_path: Path) -> tuple[np.ndarray, list[str]]:
    """Document embeddings (row i = i-th document of the documents file) and the document ids."""
    embeddings = np.load(embeddings_path)
    ids = [d.id for d in read_corpus(documents_path)]
    if len(ids) != len(embeddings):
        raise SystemExit(f"{documents_path}: {len(ids)} documents but {len(embeddings)} embeddings")
    return embeddings.astype(np.float32), ids


def load_qrels(directory: Path | None) -> Qrels:
    """query id -> {doc id: grade > 0} from every BEIR qrels/*.tsv."""
    qrels: Qrels = {}
    for tsv in sorted(directory.glob("*.tsv")) if directory else []:
        for qid, judged in read_qrels(tsv).items():
            qrels.setdefault(qid, {}).update({d: g for d, g in judged.items() if g > 0})
    return qrels


def embed_queries(texts: list[str], artifacts: Path | None, cache: Path) -> np.ndarray:
    """Query embeddings with the stack's own encoder, cached next to the results."""
    if cache.exists():
        cached = np.load(cache)
        if len(cached) == len(texts):
            return cached
    from transformers import AutoTokenizer

    from ranking_build.models import SentenceEncoder, default_encoder_path, encode_texts

    tokenizer_dir = ArtifactPaths(artifacts).tokenizer(ENCODER.name) if artifacts else None
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir if tokenizer_dir and tokenizer_dir.exists()
                                                   else default_encoder_path()))
    encoder = SentenceEncoder(default_encoder_path())
    out = encode_texts(encoder, tokenizer, texts, max_length=64, progress="embedding queries", bf16=False)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def spherical_kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 25) -> np.ndarray:
    centres = x[rng.choice(len(x), size=k, replace=False)].copy()
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(iterations):
        labels = np.argmax(x @ centres.T, axis=1)
        for j in range(k):
            members = x[labels == j]
            if len(members):
                c = members.sum(axis=0)
                centres[j] = c / max(np.linalg.norm(c), 1e-12)
    return labels


def served_rankings(url: str, texts: list[str], ids: list[str], candidates: int,
                    cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query's non-personalised ranking by the served stack: index rows, the scores it is
    ordered by (the reranker's over the reranked head) and the first stage's scores, each
    [queries, candidates]. Fetched once (`POST /v1/search`, no user) and cached in `cache`: a
    degraded answer (reranker skipped) would not be the stack's ranking, so it is an error."""
    if cache.exists():
        saved = np.load(cache)
        return saved["rows"], saved["scores"], saved["retrieval"]
    import httpx
    from tqdm import tqdm

    row_of = {d: i for i, d in enumerate(ids)}
    rows = np.zeros((len(texts), candidates), dtype=np.int64)
    scores = np.zeros((len(texts), candidates), dtype=np.float64)
    retrieval = np.zeros((len(texts), candidates), dtype=np.float64)
    with httpx.Client(base_url=url, timeout=60.0) as client:
        for q, text in enumerate(tqdm(texts, desc="served rankings", unit="query")):
            out = client.post("/v1/search", json={"query": text, "k": candidates, "candidates": candidates})
            body = out.json()
            if out.status_code != 200 or body.get("degraded") or not body.get("reranked"):
                raise SystemExit(f"query {q}: the gateway answered {out.status_code} {out.text[:200]}")
            hits = body["results"]
            if len(hits) != candidates:
                raise SystemExit(f"query {q}: {len(hits)} results, not {candidates}")
            rows[q] = [row_of[h["id"]] for h in hits]
            scores[q] = [h["score"] for h in hits]
            retrieval[q] = [h["retrieval_score"] for h in hits]
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, rows=rows, scores=scores, retrieval=retrieval)
    return rows, scores, retrieval


def head_recall(scores: np.ndarray, relevant: np.ndarray, depth: int, thresholds: list[float],
                page: int = 10) -> list[dict[str, float]]:
    """How a protected head at each z threshold covers the query's relevant documents: `scores`
    [queries, candidates] are the served scores (the reranker's over the first `depth`),
    `relevant` the qrels mask in the same order. Per threshold: candidates protected per query
    (z against the reranked head >= the threshold), the share of the head's relevant documents
    among them, and how many relevant documents of the first `page` are left outside it."""
    head, rel = scores[:, :depth], relevant[:, :depth]
    z = (head - head.mean(axis=1, keepdims=True)) / np.maximum(head.std(axis=1, keepdims=True), 1e-9)
    out = []
    for t in thresholds:
        protected = z >= t
        out.append({"z": t, "protected_per_query": float(protected.sum(axis=1).mean()),
                    "relevant_in_head_protected": float(rel[protected].sum() / max(1, rel.sum())),
                    "page_relevant_outside": int((rel[:, :page] & ~protected[:, :page]).sum()),
                    "page_relevant": int(rel[:, :page].sum())})
    return out


def head_recall_report(args: argparse.Namespace) -> list[dict[str, float]]:
    """`--head-recall`: `head_recall` over the served rankings of the `--eval-split` queries."""
    if not (args.ranking_url and args.artifacts and args.eval_split):
        raise SystemExit("--head-recall needs --ranking-url, --artifacts, --qrels and --eval-split")
    _, ids = load_index(ArtifactPaths(args.artifacts).embeddings, ArtifactPaths(args.artifacts).documents)
    by_id = read_queries(args.queries)
    query_ids, texts = list(by_id), list(by_id.values())
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    manifest = hashlib.sha256(ArtifactPaths(args.artifacts).manifest.read_bytes()).hexdigest()[:12]
    rows, scores, _ = served_rankings(args.ranking_url, texts, ids, args.candidates,
                                      args.cache_dir / f"served_rankings-{digest}-{manifest}-{args.candidates}.npz")
    judged = read_qrels(args.qrels / f"{args.eval_split}.tsv")
    qs = [i for i, q in enumerate(query_ids) if judged.get(q)]
    relevant = np.array([[judged[query_ids[q]].get(ids[r], 0) > 0 for r in rows[q]] for q in qs])
    return head_recall(scores[qs], relevant, args.rerank_depth, args.head_recall)


# ----------------------------------------------------------------------------- backends


@dataclass
class Ranking:
    doc_ids: list[str]
    request_id: str
    cached: bool | None = None


class InProcessBackend:
    """The real Personalization over the first stage's candidate ranking."""

    def __init__(self, embeddings: np.ndarray, ids: list[str], texts: list[str], top: np.ndarray,
                 top_scores: np.ndarray, log_dir: Path, weights: Path | None,
                 protect_head_z: float | None | str = "default", depth: int | None = None,
                 scorer_options: dict[str, Any] | None = None, top_retrieval: np.ndarray | None = None,
                 head: int | None = None) -> None:
        from ranking_gateway.personalization.jsonl_log import JsonlEventLog
        from ranking_gateway.personalization.memory_store import InMemoryProfileStore
        from ranking_gateway.personalization.scorer import PersonalScorer
        from ranking_gateway.personalization.service import Personalization

        scorer = PersonalScorer.load(weights) if weights else PersonalScorer()
        if protect_head_z != "default":
            scorer.protect_head_z = protect_head_z
        for name, value in (scorer_options or {}).items():
            if name == "profile_sim":
                scorer.weights[2] = value
            else:
                setattr(scorer, name, value)
        self.personalization = Personalization(
            embeddings=embeddings, doc_ids=ids, store=InMemoryProfileStore(), event_log=JsonlEventLog(log_dir),
            scorer=scorer)
        self.ids, self.texts, self.top, self.top_scores = ids, texts, top, top_scores
        self.top_retrieval = top_scores if top_retrieval is None else top_retrieval
        self.head = head  # the primary feature is z-scored against this many leading candidates (None: z_head)
        self.depth = depth or top.shape[1]  # the first `depth` candidates are personalised, the rest keep their place

    def candidates(self, q: int) -> list[str]:
        return [self.ids[i] for i in self.top[q]]

    async def search(self, q: int, user: str | None, k: int = 10, log: bool = True) -> Ranking:
        request_id = uuid.uuid4().hex
        result = None
        if user is not None:
            self.personalization.log_impressions = log
            head = slice(0, self.depth)
            result = await self.personalization.personalize(
                user, self.top[q][head], self.top_scores[q][head], self.top_retrieval[q][head], request_id=request_id,
                k=k, query=self.texts[q], head=self.head)
        order = result.order if result is not None else range(min(k, len(self.top[q])))
        return Ranking([self.ids[self.top[q][i]] for i in order], request_id)

    async def event(self, body: dict[str, Any]) -> None:
        from ranking_gateway.serving.schemas import parse_event

        await self.personalization.record(parse_event(body, doc_exists=self.personalization.has_document))

    async def close(self) -> None:
        await self.personalization.close()


class HttpBackend:
    """The served gateway."""

    def __init__(self, url: str, query_texts: list[str], candidates: int) -> None:
        import httpx

        self.client = httpx.AsyncClient(base_url=url, timeout=60.0)
        self.texts = query_texts
        self.n_candidates = candidates
        self._candidates: dict[int, list[str]] = {}
        self.event_latency_ms: list[float] = []
        self.failed_queries: set[int] = set()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"{path} -> {response.status_code}: {response.text[:300]}")
        return response.json()

    async def prefetch(self, q: int) -> bool:
        """The query's non-personalised candidates; False (and counted) when the gateway fails it."""
        if q not in self._candidates:
            try:
                out = await self._post("/v1/search", {"query": self.texts[q], "k": self.n_candidates,
                                                      "candidates": self.n_candidates})
            except RuntimeError as exc:
                print(f"  query {q} skipped: {exc}", file=sys.stderr)
                self.failed_queries.add(q)
                return False
            self._candidates[q] = [r["id"] for r in out["results"]]
        return q not in self.failed_queries

    def candidates(self, q: int) -> list[str]:
        return self._candidates[q]

    async def search(self, q: int, user: str | None, k: int = 10, log: bool = True) -> Ranking:
        body: dict[str, Any] = {"query": self.texts[q], "k": k, "candidates": self.n_candidates}
        if user:
            body["user_id"] = user
        out = await self._post("/v1/search", body)
        return Ranking([r["id"] for r in out["results"]], out["request_id"], out.get("cached"))

    async def event(self, body: dict[str, Any]) -> None:
        start = time.perf_counter()
        response = await self.client.post("/v1/events", json=body)
        self.event_latency_ms.append((time.perf_counter() - start) * 1e3)
        if response.status_code != 202:
            raise RuntimeError(f"/v1/events -> {response.status_code}: {response.text[:300]}")

    async def profile(self, user: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/users/{user}/profile")
        response.raise_for_status()
        return response.json()

    async def close(self) -> None:
        await self.client.aclose()


# ----------------------------------------------------------------------------- simulation


@dataclass
class SimUser:
    name: str
    cluster: int
    eval_queries: list[int]
    click_queries: list[int]
    ndcg: dict[int, list[float]] = field(default_factory=dict)  # clicks -> see evaluate()


def pick_users(args, labels: np.ndarray, candidate_lists: np.ndarray, rng: np.random.Generator,
               eval_pool: np.ndarray | None = None) -> list[SimUser]:
    """`eval_pool` (a mask over queries): where a user's held-out queries may come from (e.g. the
    split the reranker was not trained on); the clicks come from the other queries then."""
    in_cluster = labels[candidate_lists]  # [queries, candidates]
    users: list[SimUser] = []
    clusters = np.arange(labels.max() + 1)
    attempts = 0
    while len(users) < args.users and attempts < 100 * args.users:
        attempts += 1
        c = int(rng.choice(clusters))
        share = (in_cluster == c).mean(axis=1)
        top10 = (in_cluster[:, :10] == c).sum(axis=1)
        # the user's cluster is present among the candidates but does not already own the top 10
        fits = (share >= args.min_share) & (top10 <= 6)
        if eval_pool is None:  # (checked before drawing: the draws of earlier runs stay the same)
            eligible = np.flatnonzero(fits)
            if len(eligible) < args.eval_queries + args.click_queries // 2:
                continue
            chosen = rng.permutation(eligible)
            held_out, clicked = chosen[: args.eval_queries], chosen[args.eval_queries:]
        else:
            pool, others = np.flatnonzero(fits & eval_pool), np.flatnonzero(fits & ~eval_pool)
            if len(pool) < args.eval_queries or len(others) < args.click_queries // 2:
                continue
            held_out = rng.permutation(pool)[: args.eval_queries]
            clicked = rng.permutation(others)
        users.append(SimUser(f"sim-{uuid.uuid4().hex[:8]}-{len(users)}", c,
                             [int(q) for q in held_out], [int(q) for q in clicked[: args.click_queries]]))
    return users


async def evaluate(backend, user: SimUser, labels_of: dict[str, int], qrels: list[dict[str, int]]) -> list[float]:
    """Mean over the user's eval queries of [personal NDCG@10 personalised, not personalised,
    query-relevance (qrels) NDCG@10 personalised, not personalised]."""
    rows = []
    for q in user.eval_queries:
        pool = backend.candidates(q)
        rel = {d: 1 for d in pool if labels_of[d] == user.cluster}  # ideal: the candidates of the cluster
        personal = (await backend.search(q, user.name, log=False)).doc_ids
        base = (await backend.search(q, None, log=False)).doc_ids
        rows.append([ndcg_at_k(personal, rel), ndcg_at_k(base, rel),
                     ndcg_at_k(personal, qrels[q]), ndcg_at_k(base, qrels[q])])
    return np.mean(rows, axis=0).tolist()


async def simulate(args, backend, users: list[SimUser], labels_of: dict[str, int], qrels, rng) -> dict[str, Any]:
    ack_to_change_ms: list[float] = []
    next_request_changed: list[bool] = []
    profile_has_event: list[bool] = []
    for n, user in enumerate(users):
        if hasattr(backend, "prefetch"):
            failed = [q for q in user.eval_queries + user.click_queries if not await backend.prefetch(q)]
            user.eval_queries = [q for q in user.eval_queries if q not in failed]
            user.click_queries = [q for q in user.click_queries if q not in failed]
            if not user.eval_queries:
                continue
        user.ndcg[0] = await evaluate(backend, user, labels_of, qrels)
        clicks = 0
        for q in user.click_queries:
            shown = await backend.search(q, user.name)
            for r, doc in enumerate(shown.doc_ids, start=1):
                if rng.random() >= 1.0 / r**args.eta:
                    continue
                relevant = labels_of[doc] == user.cluster
                if rng.random() >= (args.p_click if relevant else args.p_noise):
                    continue
                await backend.event({"user_id": user.name, "doc_id": doc, "type": "click",
                                     "request_id": shown.request_id, "position": r})
                acked = time.perf_counter()
                if args.url:  # the very next request: does it already answer the changed ranking?
                    after = await backend.search(q, user.name, log=False)
                    ack_to_change_ms.append((time.perf_counter() - acked) * 1e3)
                    next_request_changed.append(after.doc_ids != shown.doc_ids)
                    profile = await backend.profile(user.name)
                    profile_has_event.append(sum(profile["events"].values()) == clicks + 1)
                clicks += 1
                if clicks in CHECKPOINTS:
                    user.ndcg[clicks] = await evaluate(backend, user, labels_of, qrels)
                if clicks >= CHECKPOINTS[-1]:
                    break
            if clicks >= CHECKPOINTS[-1]:
                break
        if (n + 1) % 25 == 0:
            print(f"  {n + 1}/{len(users)} users", file=sys.stderr)
    results: dict[str, Any] = {}
    for c in CHECKPOINTS:
        reached = [u for u in users if c in u.ndcg]
        if reached:
            m = np.array([u.ndcg[c] for u in reached])
            gain = m[:, 0] - m[:, 1]
            query_change = m[:, 2] - m[:, 3]
            gain_se = float(gain.std(ddof=1) / math.sqrt(len(reached))) if len(reached) > 1 else None
            query_se = float(query_change.std(ddof=1) / math.sqrt(len(reached))) if len(reached) > 1 else None
            results[str(c)] = {
                "users": len(reached),
                "ndcg@10_personalized": float(m[:, 0].mean()),
                "ndcg@10_not_personalized": float(m[:, 1].mean()),
                "gain": float(gain.mean()),
                "gain_se": gain_se,  # standard error of the mean per-user gain
                "gain_ci95": 1.96 * gain_se if gain_se is not None else None,
                "query_ndcg@10_personalized": float(m[:, 2].mean()),
                "query_ndcg@10_not_personalized": float(m[:, 3].mean()),
                "query_change": float(query_change.mean()),
                "query_change_se": query_se,
                "query_change_ci95": 1.96 * query_se if query_se is not None else None,
            }
    out: dict[str, Any] = {"ndcg_by_clicks": results}
    if args.url:
        lat = np.array(backend.event_latency_ms)
        out["events_latency_ms"] = {p: float(np.percentile(lat, q)) for p, q in
                                    (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))} | {"n": int(len(lat))}
        ack = np.array(ack_to_change_ms)
        out["ack_to_next_search_ms"] = {"p50": float(np.percentile(ack, 50)), "p99": float(np.percentile(ack, 99)),
                                        "n": int(len(ack))}
        out["next_request_changed_fraction"] = float(np.mean(next_request_changed)) if next_request_changed else None
        out["next_profile_read_has_event_fraction"] = float(np.mean(profile_has_event)) if profile_has_event else None
        out["queries_failed_by_gateway"] = sorted(backend.failed_queries)
    return out


def plot(results: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [int(c) for c in results]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [results[c]["ndcg@10_personalized"] for c in results], "o-", label="personalised")
    ax.plot(xs, [results[c]["ndcg@10_not_personalized"] for c in results], "s--", label="not personalised")
    ax.set_xlabel("clicks so far")
    ax.set_ylabel("NDCG@10 (personal relevance)")
    ax.set_xticks(xs)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _z_or_none(value: str) -> float | None | str:
    if value in ("default", "none"):
        return None if value == "none" else value
    return float(value)


def _int_or_none(value: str) -> int | None | str:
    if value in ("default", "none"):
        return None if value == "none" else value
    return int(value)


def scorer_options(args: argparse.Namespace) -> dict[str, Any]:
    """The scorer settings given on the command line (the others: the weights file's, else the defaults)."""
    options: dict[str, Any] = {}
    for name in ("profile_sim", "profile_expansion", "expansion_steps", "confidence_ref", "confidence_cap",
                 "profile_floor_quantile", "max_newcomers", "page"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.keep_page_order:
        options["keep_page_order"] = True
    if args.affinity_gate is not None:
        options["affinity_gate"] = tuple(args.affinity_gate)
    if args.max_demotion != "default":
        options["max_demotion"] = args.max_demotion
    return options


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, help="build output: index/embeddings.npy + index/documents.jsonl")
    p.add_argument("--embeddings", type=Path, help="instead of --artifacts: document embeddings .npy ...")
    p.add_argument("--corpus", type=Path, help="... and the corpus.jsonl whose line order they follow")
    p.add_argument("--queries", type=Path, help="queries.jsonl ({_id, text}); required unless --plot-frontier")
    p.add_argument("--qrels", type=Path, help="BEIR qrels/ directory: also report query-relevance NDCG@10")
    p.add_argument("--url", help="served gateway base URL; default: in-process")
    p.add_argument("--ranking-url",
                   help="in-process personalisation over this served gateway's non-personalised rankings "
                        "(its first stage and reranker) instead of the exact dense ranking")
    p.add_argument("--rerank-depth", type=int, default=30,
                   help="with --ranking-url: the gateway's --rerank-depth, the head it reranks and personalises")
    p.add_argument("--personalize-head-only", action="store_true",
                   help="with --ranking-url: personalise only the reranked head, as the gateway did before v5")
    p.add_argument("--z-reference", type=int,
                   help="z-score the primary feature against the first N candidates (default: the reranked head "
                        "with --ranking-url, else the scorer's z_head)")
    p.add_argument("--eval-split", metavar="SPLIT",
                   help="held-out queries only from qrels/SPLIT.tsv (e.g. test: not the reranker's training "
                        "queries), clicked queries only from the others")
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--clusters", type=int, default=20)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--eval-queries", type=int, default=5)
    p.add_argument("--click-queries", type=int, default=40)
    p.add_argument("--min-share", type=float, default=0.05, help="least share of a user's cluster among a query's candidates")
    p.add_argument("--eta", type=float, default=1.0, help="position bias: P(examine rank r) = 1/r^eta")
    p.add_argument("--p-click", type=float, default=0.9)
    p.add_argument("--p-noise", type=float, default=0.05)
    p.add_argument("--weights", type=Path, help="personaliser weights JSON (in-process mode)")
    p.add_argument("--protect-head-z", type=_z_or_none, default="default",
                   help="scorer's protected head: candidates with primary z-score >= Z keep their place; "
                        "'none': off; default: the product's default (in-process mode)")
    p.add_argument("--profile-sim", type=float, help="override the profile_sim weight (in-process)")
    p.add_argument("--profile-expansion", type=int, help="scorer's profile_expansion (in-process)")
    p.add_argument("--expansion-steps", type=int, help="scorer's expansion_steps (in-process)")
    p.add_argument("--max-demotion", type=_int_or_none, default="default",
                   help="scorer's max_demotion: N or 'none' (in-process)")
    p.add_argument("--affinity-gate", type=float, nargs=2, metavar=("LO", "HI"),
                   help="scorer's affinity_gate: profile weight x clip((a - LO) / (HI - LO), 0, 1), a = mean "
                        "cosine of the non-personalised top --gate-top to the profile (in-process)")
    p.add_argument("--confidence-ref", type=float,
                   help="scorer's confidence_ref: profile weight x min(cap, REF / top z-spread) (in-process)")
    p.add_argument("--confidence-cap", type=float, help="scorer's confidence_cap (in-process)")
    p.add_argument("--profile-floor-quantile", type=float,
                   help="scorer's profile_floor_quantile: promote-only profile term (in-process)")
    p.add_argument("--max-newcomers", type=int,
                   help="scorer's max_newcomers: at most N documents from outside the non-personalised top --page "
                        "enter the personalised one (in-process)")
    p.add_argument("--keep-page-order", action="store_true",
                   help="scorer's keep_page_order: the non-personalised top --page keep their order among "
                        "themselves (in-process)")
    p.add_argument("--page", type=int, help="scorer's page (in-process)")
    p.add_argument("--oracle-embeddings", action="store_true",
                   help="diagnostic (in-process): the personaliser sees each document as the one-hot vector of its "
                        "cluster instead of its embedding, so a profile learnt from clicks can be exact; the first "
                        "stage still uses the real embeddings")
    p.add_argument("--no-plot", action="store_true", help="write the JSON only")
    p.add_argument("--plot-frontier", nargs="+", type=Path, metavar="JSON",
                   help="instead of simulating: plot gain against query NDCG@10 change after --frontier-clicks "
                        "clicks for these result files into --out-dir/personalization_sim_<tag>.png")
    p.add_argument("--frontier-clicks", default="3")
    p.add_argument("--head-recall", type=float, nargs="+", metavar="Z",
                   help="instead of simulating (with --ranking-url and --eval-split): how a protected head at each "
                        "z threshold covers the split's qrels-relevant documents (head_recall)")
    p.add_argument("--pool-seeds", action="store_true",
                   help="with --plot-frontier: one point per setting, averaged over its seeds' files")
    p.add_argument("--personalize-depth", type=int,
                   help="personalise only the first N of the --candidates (the rest keep their place; in-process)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="suffix of the output file names")
    p.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"), help="query-embedding cache (git-ignored)")
    p.add_argument("--log-dir", type=Path, help="in-process event log directory (default: a temp dir)")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    if args.artifacts:
        paths = ArtifactPaths(args.artifacts)
        embeddings, ids = load_index(paths.embeddings, paths.documents)
    elif args.embeddings and args.corpus:
        embeddings, ids = load_index(args.embeddings, args.corpus)
    else:
        raise SystemExit("give --artifacts, or --embeddings and --corpus")
    by_id = read_queries(args.queries)
    query_ids, texts = list(by_id), list(by_id.values())
    qrels_by_id = load_qrels(args.qrels)
    qrels = [qrels_by_id.get(q, {}) for q in query_ids]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    labels = spherical_kmeans(embeddings, args.clusters, rng)
    labels_of = dict(zip(ids, labels.tolist()))
    candidate_retrieval = None
    if args.ranking_url:
        manifest = hashlib.sha256(ArtifactPaths(args.artifacts).manifest.read_bytes()).hexdigest()[:12] \
            if args.artifacts else "no-artifacts"
        candidate_lists, candidate_scores, candidate_retrieval = served_rankings(
            args.ranking_url, texts, ids, args.candidates,
            args.cache_dir / f"served_rankings-{digest}-{manifest}-{args.candidates}.npz")
        if args.personalize_head_only:
            args.personalize_depth = args.personalize_depth or args.rerank_depth
        else:  # the primary the gateway hands the personaliser
            for q in range(len(candidate_scores)):
                inputs = personalization_inputs([
                    Candidate(int(r), float(f), float(p) if i < args.rerank_depth else None)
                    for i, (r, f, p) in enumerate(zip(candidate_lists[q], candidate_retrieval[q], candidate_scores[q]))])
                candidate_scores[q] = inputs.primary
        args.z_reference = args.z_reference or args.rerank_depth
    else:
        queries = embed_queries(texts, args.artifacts, args.cache_dir / f"query_embeddings-{digest}.npy")
        hits = first_stage.dense_search_batch(first_stage.flat_index(embeddings), queries, args.candidates)
        candidate_lists, candidate_scores = np.stack([r for r, _ in hits]), np.stack([s for _, s in hits])
    eval_pool = None
    if args.eval_split:
        held_out = set(read_qrels(args.qrels / f"{args.eval_split}.tsv"))
        eval_pool = np.array([q in held_out for q in query_ids])
    users = pick_users(args, labels, candidate_lists, rng, eval_pool)
    print(f"{len(users)} simulated users, {args.clusters} clusters, {len(texts)} queries", file=sys.stderr)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="personalization_sim_"))
    if args.url:
        backend: Any = HttpBackend(args.url, texts, args.candidates)
    else:
        personal_embeddings = (np.eye(args.clusters, dtype=np.float32)[labels] if args.oracle_embeddings
                               else embeddings)
        backend = InProcessBackend(personal_embeddings, ids, texts, candidate_lists, candidate_scores, log_dir,
                                   args.weights,
                                   args.protect_head_z, args.personalize_depth, scorer_options(args),
                                   candidate_retrieval, args.z_reference)
    start = time.perf_counter()
    try:
        results = await simulate(args, backend, users, labels_of, qrels, rng)
    finally:
        await backend.close()
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["config"]["mode"] = "http" if args.url else "in-process"
    results["config"]["event_log"] = None if args.url else str(log_dir)
    results["wall_s"] = time.perf_counter() - start
    return results


def frontier_points(paths: list[Path], clicks: str, pool_seeds: bool = False) -> list[dict[str, Any]]:
    """Gain and query NDCG@10 change (after `clicks` clicks, with standard errors) of result files,
    one point each, labelled by its tag; `pool_seeds`: one point per tag without its `s<seed>_`
    part, the mean over the seeds' files (independent users: s.e. = sqrt(sum of s.e.^2) / n)."""
    points = []
    for path in paths:
        res = json.loads(path.read_text())
        row = res["ndcg_by_clicks"][clicks]
        q = row["query_ndcg@10_personalized"] - row["query_ndcg@10_not_personalized"]
        points.append({"tag": res["config"].get("tag") or path.stem, "seed": res["config"].get("seed"),
                       "gain": row["gain"], "gain_se": row["gain_ci95"] / 1.96,
                       "query_change": q, "query_change_se": row["query_change_ci95"] / 1.96})
    if not pool_seeds:
        return points
    groups: dict[str, list[dict[str, Any]]] = {}
    for pt in points:
        groups.setdefault(re.sub(r"_s\d+_", "_", pt["tag"]), []).append(pt)
    pooled = []
    for tag, pts in groups.items():
        n = len(pts)
        pooled.append({"tag": tag, "seed": sorted(pt["seed"] for pt in pts),
                       "gain": sum(pt["gain"] for pt in pts) / n,
                       "gain_se": math.sqrt(sum(pt["gain_se"] ** 2 for pt in pts)) / n,
                       "query_change": sum(pt["query_change"] for pt in pts) / n,
                       "query_change_se": math.sqrt(sum(pt["query_change_se"] ** 2 for pt in pts)) / n})
    return pooled


def plot_frontier(paths: list[Path], out: Path, clicks: str, pool_seeds: bool = False) -> list[dict[str, Any]]:
    """Plot `frontier_points` into `out`; returns the points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = frontier_points(paths, clicks, pool_seeds)
    fig, ax = plt.subplots(figsize=(8, 6))
    for pt in points:
        ax.errorbar(pt["query_change"], pt["gain"], xerr=pt["query_change_se"], yerr=pt["gain_se"], fmt="o",
                    ms=4, capsize=2, alpha=0.8)
        ax.annotate(re.sub(r"^v\d+_", "", pt["tag"]), (pt["query_change"], pt["gain"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.axhline(0.10, color="grey", ls="--", lw=0.8)
    ax.axvline(0.0, color="grey", ls="--", lw=0.8)
    ax.set_xlabel(f"query NDCG@10 change after {clicks} clicks (SciFact qrels; bars: 1 s.e.)")
    ax.set_ylabel(f"personal NDCG@10 gain after {clicks} clicks (bars: 1 s.e.)")
    ax.set_title("goal: above the horizontal line, right of the vertical one", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    return points


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.plot_frontier:
        out = args.out_dir / f"personalization_sim_{args.tag or 'frontier'}.png"
        for pt in plot_frontier(args.plot_frontier, out, args.frontier_clicks, args.pool_seeds):
            print(f"{pt['tag']:40s} seeds {pt['seed']}  gain {pt['gain']:+.3f} ± {pt['gain_se']:.3f}   "
                  f"query {pt['query_change']:+.4f} ± {pt['query_change_se']:.4f}")
        return 0
    if args.queries is None:
        raise SystemExit("--queries is required")
    if args.head_recall:
        report = head_recall_report(args)
        (args.out_dir / f"personalization_head_recall{'_' + args.tag if args.tag else ''}.json").write_text(
            json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
        return 0
    results = asyncio.run(amain(args))
    stem = "personalization_sim" + ("_http" if args.url else "") + (f"_{args.tag}" if args.tag else "")
    (args.out_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_plot:
        plot(results["ndcg_by_clicks"], args.out_dir / f"{stem}.png",
             f"{results['config']['mode']}: {args.users} users, eta={args.eta}, {args.clusters} clusters")
    print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
