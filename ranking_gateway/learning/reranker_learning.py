"""The reranker's part of `learn`: what the round needs from outside (the serving build and
reranker, the judged queries with the gateway's first-stage candidates) and what it leaves (a
reranker directory and artifacts for the swap). The decision itself is `reranker_round`.

Where the serving reranker is: the manifest of the artifacts the gateway serves names the
directory it was exported from (`reranker.source`); `learn` trains from there and writes every
candidate that passes to `--workdir/rerankers/vNNNN`, whose artifacts (`--workdir/artifacts/vNNNN`,
`ranking_build.query_side` for a late-interaction reranker, `ranking_build.cross_encoder_swap` for
a cross-encoder) name it in turn: each round starts from what is served, also after a rollback.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ranking_gateway.core.errors import CliError
from ranking_gateway.learning.reranker_round import JudgedQueries


def readiness(url: str, timeout: float) -> dict[str, Any]:
    """`GET /readyz`: the rerank plan (kind, depth, alpha, token budget) the gateway serves."""
    import httpx

    try:
        answer = httpx.get(url.rstrip("/") + "/readyz", timeout=timeout)
    except httpx.HTTPError as exc:
        raise CliError(f"could not reach the gateway at {url}: {exc}") from None
    body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
    if answer.status_code != 200 or not body.get("ready"):
        raise CliError(f"the gateway at {url} is not ready ({answer.status_code}): {answer.text[:300]}")
    if not body.get("rerank"):
        raise CliError(f"the gateway at {url} serves no reranker: `learn --judged` has nothing to retrain")
    return body


def first_stage(url: str, query: str, depth: int, headers: dict[str, str], timeout: float) -> list[tuple[str, float]]:
    """The served first stage's top `depth` for `query`: a search with reranking off, no user."""
    import httpx

    answer = httpx.post(url.rstrip("/") + "/v1/search", json={"query": query, "k": depth, "rerank": False},
                        headers=headers, timeout=timeout)
    if answer.status_code != 200:
        raise CliError(f"POST {url}/v1/search answered {answer.status_code}: {answer.text[:300]}")
    return [(hit["id"], float(hit["retrieval_score"])) for hit in answer.json()["results"]]


def judged_queries(args: argparse.Namespace, depth: int) -> JudgedQueries:
    """`--judged`'s queries (all of `--judged-split`, or its `--judged-fraction` held out as
    `train-reranker` holds it out with the same seed), with the gateway's candidates."""
    from tqdm import tqdm

    from ranking_gateway.core.collection import CollectionError, load_collection
    from ranking_gateway.training.examples import split_heldout

    try:
        coll = load_collection(args.judged, args.judged_split)
    except (CollectionError, OSError, ValueError) as exc:
        raise CliError(f"--judged {args.judged}: {exc}") from None
    qids = sorted(q for q in coll.queries if coll.qrels.get(q))
    if args.judged_fraction < 1.0:
        qids = split_heldout(qids, args.judged_fraction, args.judged_seed)[1]
    if not qids:
        raise CliError(f"--judged {args.judged}: no judged queries in split {args.judged_split}")
    from ranking_gateway.serving.deploy_command import auth_headers

    headers = auth_headers(args.api_key_file)
    candidates = {q: first_stage(args.url, coll.queries[q], depth, headers, args.timeout)
                  for q in tqdm(qids, desc="judged queries: first stage", unit="query")}
    return JudgedQueries({q: coll.queries[q] for q in qids}, candidates, {q: coll.qrels[q] for q in qids})


def serving_reranker(manifest_source: str, artifacts: Path, override: Path | None, kind: str) -> Path:
    """The directory the served reranker was exported from (`--serving-reranker` first)."""
    if override is not None:
        return override
    source = Path(manifest_source)
    marker = "late_interaction.json" if kind == "late-interaction" else "config.json"
    for candidate in (source, artifacts.parent / source):
        if (candidate / marker).is_file():
            return candidate.resolve()
    raise CliError(f"the served reranker's directory {manifest_source} (from {artifacts}'s manifest) is not readable "
                   "here: give --serving-reranker DIR")
