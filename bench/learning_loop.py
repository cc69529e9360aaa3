"""The feedback loop, end to end, with simulated users: NDCG@10 of the served stack after 0, 1, 2
and 3 rounds of `ranking-gateway learn` (the reranker retrained from the gateway's own click log
and swapped in live), then adversarial rounds whose clicks must be refused by the gate.

* The gateway: `serve --artifacts A --event-log DIR` (embedded Triton), as a user starts it.
* The queries of `--collection`'s `--traffic-split` are split in two by a hash of their id:
  *traffic* queries, which simulated users search (a new user each search, so personalisation
  stays out of it), and *evaluation* queries, never searched by users, on which the served
  stack is measured after every round (`POST /v1/search`, no user, top 10, against the qrels).
* The traffic queries are measured too (against their qrels, not clicks): what the users who
  clicked search again, as users do.
* A user looks at the top 10 and clicks by a position-biased, noisy model: rank r is examined
  with probability 1/r^eta, an examined relevant document is clicked with probability --p-click,
  an irrelevant one with --p-noise (the click model of bench/personalization_sim.py).
* After each round's searches, `ranking-gateway learn --no-personalizer --judged COLLECTION
  --judged-split S --judged-fraction F` runs as cron would run it (a subprocess): it trains
  the reranker's query side from the served one on the new clicks and deploys it through the
  live swap when its gate passes.
* Adversarial rounds (`--adversarial random,bottom`): *random*: every shown document clicked with
  probability 0.15, whatever it is; *bottom*: a click farm that clicks the last shown result of
  every search (the most weight a position-debiased learner gives a click). Both should be
  refused, and the served NDCG stay where it was.

Writes `--out/learning_loop.json` and `.png`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_process import start_gateway, stop_gateway  # noqa: E402

from ranking_gateway.core.collection import load_collection  # noqa: E402
from ranking_gateway.evaluation.metrics import ndcg_at_k  # noqa: E402


def split_queries(qids: list[str], eval_fraction: float, salt: str = "") -> tuple[list[str], list[str]]:
    """(traffic, evaluation) by a hash of the query id: stable across runs and machines."""
    def held(q: str) -> bool:
        return int.from_bytes(hashlib.sha1((salt + q).encode()).digest()[:4], "big") < eval_fraction * 2**32

    return [q for q in qids if not held(q)], [q for q in qids if held(q)]


def served_ndcg(client: httpx.Client, queries: dict[str, str], qids: list[str], qrels) -> dict[str, float]:
    out = {}
    for q in qids:
        body = client.post("/v1/search", json={"query": queries[q], "k": 10}).json()
        out[q] = ndcg_at_k([hit["id"] for hit in body["results"]], qrels[q])
    return out


def simulate(client: httpx.Client, queries: dict[str, str], qids: list[str], qrels, searches: int, behaviour: str,
             args: argparse.Namespace, rng: np.random.Generator, tag: str) -> dict[str, int]:
    """`searches` searches of random traffic queries, each by a new user, and their clicks."""
    counts = {"searches": 0, "clicks": 0, "degraded": 0}
    for i in range(searches):
        q = qids[int(rng.integers(len(qids)))]
        user = f"{tag}-{i}"
        body = client.post("/v1/search", json={"query": queries[q], "k": 10, "user_id": user}).json()
        counts["searches"] += 1
        counts["degraded"] += int(bool(body.get("degraded")))
        shown = [hit["id"] for hit in body["results"]]
        clicked = []
        for rank, doc in enumerate(shown, start=1):
            if behaviour == "random":
                hit = rng.random() < 0.15
            elif behaviour == "bottom":
                hit = rank == len(shown)
            else:
                relevant = qrels[q].get(doc, 0) > 0
                hit = rng.random() < 1.0 / rank**args.eta and rng.random() < (args.p_click if relevant else args.p_noise)
            if hit:
                clicked.append((rank, doc))
        for rank, doc in clicked:
            answer = client.post("/v1/events", json={"user_id": user, "doc_id": doc, "type": "click",
                                                     "request_id": body["request_id"], "position": rank})
            answer.raise_for_status()
            counts["clicks"] += 1
    return counts


def judged_collection(collection: Path, queries: dict[str, str], qids: list[str], qrels, out: Path) -> Path:
    """A BEIR directory (split `judged`) of `qids`' judgments: for a collection with one split,
    the gate's judged queries are cut from the queries users never search, apart from the
    evaluation ones."""
    (out / "qrels").mkdir(parents=True)
    (out / "corpus.jsonl").symlink_to((collection / "corpus.jsonl").resolve())
    with (out / "queries.jsonl").open("w") as fq, (out / "qrels" / "judged.tsv").open("w") as fr:
        fr.write("query-id\tcorpus-id\tscore\n")
        for q in qids:
            fq.write(json.dumps({"_id": q, "text": queries[q]}) + "\n")
            fr.writelines(f"{q}\t{d}\t{s}\n" for d, s in qrels[q].items())
    return out


def learn(args: argparse.Namespace, url: str, events: Path, workdir: Path, judged: tuple[Path, str]) -> tuple[int, str, float]:
    cmd = [sys.executable, "-m", "ranking_gateway.cli", "learn", "--events", str(events), "--workdir", str(workdir),
           "--url", url, "--settle", "0", "--no-personalizer", "--judged", str(judged[0]),
           "--judged-split", judged[1], "--judged-fraction", str(args.judged_fraction),
           "--min-clicks", str(args.min_clicks), "--reranker-epochs", str(args.epochs), "--eta", str(args.eta)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    (workdir / "learn.log").parent.mkdir(parents=True, exist_ok=True)
    with (workdir / "learn.log").open("a") as log:
        log.write(proc.stdout + proc.stderr)
    line = (proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines() or [""])[-1]
    return proc.returncode, line, seconds


def paired(per_query: dict[str, float], base: dict[str, float]) -> dict[str, float]:
    d = np.array([per_query[q] - base[q] for q in base])
    return {"mean": float(d.mean()), "standard_error": float(d.std(ddof=1) / np.sqrt(len(d)))}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = results["rounds"]
    x = list(range(len(rounds)))
    y = [r["eval_ndcg@10"] for r in rounds]
    se = [r["vs_round_0"]["standard_error"] for r in rounds]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    if all("traffic_ndcg@10" in r for r in rounds):
        ax.errorbar(x, [r["traffic_ndcg@10"] for r in rounds], yerr=[r["traffic_vs_round_0"]["standard_error"] for r in rounds],
                    marker="s", color="#8c8c8c", capsize=3, label="the users' own queries (traffic, trained on)")
    ax.errorbar(x, y, yerr=se, marker="o", color="#2b7bba", capsize=3, label="held-out queries (never searched by users)")
    for i, r in enumerate(rounds):
        colour = {"deploy": "#27ae60", "refused": "#c0392b", "skipped": "#8c8c8c"}.get(r.get("verdict"), "#000000")
        ax.annotate(r.get("verdict") or "start", (i, y[i]), textcoords="offset points", xytext=(0, 10), ha="center",
                    fontsize=8, color=colour)
    ax.set_xticks(x, [r["label"] for r in rounds], fontsize=8)
    ax.set_ylabel("NDCG@10")
    ax.set_title(f"learn rounds on {results['config']['collection_name']}: served NDCG@10 "
                 f"({results['config']['eval_queries']} held-out, {results['config']['traffic_queries']} traffic queries; "
                 "bars: paired SE vs round 0)", fontsize=9)
    ax.margins(y=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, required=True, help="a late-interaction build (round 0)")
    p.add_argument("--collection", type=Path, required=True, help="BEIR directory (users' queries and the judged set)")
    p.add_argument("--traffic-split", default="test", help="qrels split whose queries users search and we measure")
    p.add_argument("--eval-fraction", type=float, default=0.5, help="share of those queries only measured")
    p.add_argument("--judged-split", default="train",
                   help="learn --judged-split: the gate's judged queries; 'heldout': half of the queries users never "
                        "search (by hash), the other half measured (a collection with one split)")
    p.add_argument("--judged-fraction", type=float, default=0.1, help="learn --judged-fraction")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--searches", type=int, default=600, help="searches per round")
    p.add_argument("--adversarial", default="random,bottom", help="adversarial rounds after the others ('' for none)")
    p.add_argument("--epochs", type=int, default=1, help="learn --reranker-epochs")
    p.add_argument("--min-clicks", type=int, default=100)
    p.add_argument("--eta", type=float, default=1.0, help="position bias: P(examine rank r) = 1/r^eta (and learn --eta)")
    p.add_argument("--p-click", type=float, default=0.9)
    p.add_argument("--p-noise", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=Path("runs/learning_loop"), help="event log, learner state (git-ignored)")
    p.add_argument("--out", type=Path, default=Path("bench/results/learning_loop"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    coll = load_collection(args.collection, args.traffic_split)
    qids = sorted(q for q in coll.queries if coll.qrels.get(q))
    traffic, evaluation = split_queries(qids, args.eval_fraction)
    work = args.workdir.resolve()
    if work.exists():
        raise SystemExit(f"{work} exists: give a fresh --workdir (the learner's state lives there)")
    events, learner = work / "events", work / "learn"
    work.mkdir(parents=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    judged = (args.collection, args.judged_split)
    if args.judged_split == "heldout":
        evaluation, gate_queries = split_queries(evaluation, 0.5, salt="judged:")
        judged = (judged_collection(args.collection, coll.queries, gate_queries, coll.qrels, work / "judged"), "judged")
    proc, url = start_gateway(args.artifacts.resolve(), ["--event-log", str(events)], work / "gateway.log")
    rounds: list[dict[str, Any]] = []
    try:
        client = httpx.Client(base_url=url, timeout=120)
        base = served_ndcg(client, coll.queries, evaluation, coll.qrels)
        base_traffic = served_ndcg(client, coll.queries, traffic, coll.qrels)
        rounds.append({"label": "round 0", "eval_ndcg@10": float(np.mean(list(base.values()))),
                       "vs_round_0": paired(base, base), "verdict": None,
                       "traffic_ndcg@10": float(np.mean(list(base_traffic.values()))),
                       "traffic_vs_round_0": paired(base_traffic, base_traffic)})
        print(f"round 0: served NDCG@10 {rounds[0]['eval_ndcg@10']:.4f} on {len(evaluation)} evaluation queries")
        plan = [("users", i + 1) for i in range(args.rounds)]
        plan += [(b, None) for b in args.adversarial.split(",") if b]
        for number, (behaviour, _) in enumerate(plan, start=1):
            counts = simulate(client, coll.queries, traffic, coll.qrels, args.searches, behaviour, args, rng, f"r{number}")
            status, line, seconds = learn(args, url, events, learner, judged)
            report_path = learner / "reports" / f"round-{number:04d}.json"
            report = json.loads(report_path.read_text()) if report_path.is_file() else {}
            reranker = report.get("reranker") or {}
            per_query = served_ndcg(client, coll.queries, evaluation, coll.qrels)
            per_traffic = served_ndcg(client, coll.queries, traffic, coll.qrels)
            entry = {
                "label": f"round {number}" + ("" if behaviour == "users" else f"\n({behaviour} clicks)"),
                "behaviour": behaviour, "traffic": counts, "learn_status": status, "learn_line": line,
                "learn_seconds": round(seconds, 1), "verdict": reranker.get("verdict"),
                "reason": reranker.get("reason"), "gate": reranker.get("gate"), "metrics": reranker.get("metrics"),
                "training": reranker.get("training"),
                "served": client.get("/v1/admin/deploy").json()["current"],
                "eval_ndcg@10": float(np.mean(list(per_query.values()))), "vs_round_0": paired(per_query, base),
                "traffic_ndcg@10": float(np.mean(list(per_traffic.values()))),
                "traffic_vs_round_0": paired(per_traffic, base_traffic),
            }
            rounds.append(entry)
            print(f"round {number} ({behaviour}): {counts['clicks']} clicks; {line}; served NDCG@10 "
                  f"{entry['eval_ndcg@10']:.4f} ({entry['vs_round_0']['mean']:+.4f} ± {entry['vs_round_0']['standard_error']:.4f}); "
                  f"on the traffic queries {entry['traffic_ndcg@10']:.4f} ({entry['traffic_vs_round_0']['mean']:+.4f} ± "
                  f"{entry['traffic_vs_round_0']['standard_error']:.4f})")
    finally:
        stop_gateway(proc)
    results = {
        "config": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                   "collection_name": args.collection.name, "traffic_queries": len(traffic),
                   "eval_queries": len(evaluation)},
        "rounds": rounds,
    }
    (args.out / "learning_loop.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "learning_loop.png")
    print(f"wrote {args.out / 'learning_loop.json'} and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
