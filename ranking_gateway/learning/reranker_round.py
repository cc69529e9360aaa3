"""One learning round for the reranker: the served model warm-started -- a late-interaction
reranker's query side (`query_side.QuerySide`) or a whole cross-encoder
(`cross_encoder.CrossEncoderModel`) -- trained on the window's clicks (propensity-weighted), and
gated against the serving model on held-out judged queries and on held-out clicks.

Metrics, for the serving model and the candidate:

* `judged_ndcg@10`: on judged queries (a BEIR collection the team keeps for this, never trained
  on), the served first stage's candidates reranked as the gateway does (the model's scores,
  blended with the first-stage score by the serving alpha). The guard against learning
  the wrong thing: spam clicks teach the model to promote the spam, and only relevance
  judgments say that is worse;
* `ips_mean_rank`: on the held-out requests' clicks, the propensity-weighted mean rank of each
  clicked document among the request's unclicked ones (`click_examples.ips_mean_rank`); lower
  is better. `random` is its value for a random order, the expectation with no signal.

The gate, with `margin` (relative, for the click metric) and `ndcg_margin` (absolute):

1. `signal`: the candidate's IPS mean rank is below a random order's by the margin: clicks with
   no ranking in them (random clicking) teach nothing worth deploying;
2. `clicks`: the candidate's IPS mean rank is at most the serving one's * (1 + margin);
3. `judged`: the candidate's judged NDCG@10 is at least the serving one's - ndcg_margin;
4. `judged_vs_reference` (when the learner recorded one): and at least the reference's (the
   served reranker's before the first round) - ndcg_margin: round after round, losses each within
   the margin must not add up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ranking_gateway.learning.click_examples import ClickExample, click_examples, ips_mean_rank, split_by_request
from ranking_gateway.learning.personalizer_round import DEPLOY, REFUSED, SKIPPED
from ranking_gateway.learning.query_side import QueryTrainConfig


class RerankerModel(Protocol):
    """What a round loads twice (the serving model and the candidate's start), trains and saves."""

    def scores(self, query: str, rows: Sequence[int]) -> np.ndarray: ...

    def train(self, examples: Sequence[ClickExample], cfg: QueryTrainConfig) -> list[float]: ...

    def save(self, out: Path, report: dict) -> None: ...


@dataclass(frozen=True)
class RerankerRoundConfig:
    margin: float = 0.01  # relative: the held-out clicks' IPS mean rank
    ndcg_margin: float = 0.005  # absolute: judged NDCG@10
    min_clicks: int = 100
    holdout: float = 0.2
    alpha: float = 1.0  # the serving blend of reranker and first-stage scores (serve --rerank-alpha)
    train: QueryTrainConfig = field(default_factory=QueryTrainConfig)

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0 or not 0.0 <= self.alpha <= 1.0:
            raise ValueError("holdout must be in (0, 1) and alpha in [0, 1]")
        if self.margin < 0 or self.ndcg_margin < 0 or self.min_clicks < 1 or self.train.epochs < 1:
            raise ValueError("margins must be >= 0, min_clicks and epochs >= 1")


@dataclass(frozen=True)
class JudgedQueries:
    """Judged queries with the served first stage's candidates: [(doc id, score)] best first."""

    queries: dict[str, str]
    candidates: dict[str, list[tuple[str, float]]]
    qrels: dict[str, dict[str, int]]


@dataclass
class RerankerRoundResult:
    verdict: str
    reason: str
    counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    candidate: RerankerModel | None = None
    train_losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        losses = self.train_losses
        return {
            "verdict": self.verdict, "reason": self.reason, "counts": self.counts, "metrics": self.metrics,
            "gate": {"checks": self.checks, "passed": self.verdict == DEPLOY},
            "training": {"steps": len(losses), "seconds": round(self.train_seconds, 1),
                         "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None},
        }


def judged_ndcg(model: RerankerModel, judged: JudgedQueries, row_of: dict[str, int], alpha: float) -> dict[str, float]:
    """NDCG@10 per judged query of the first stage's candidates reranked by `model`."""
    from ranking_gateway.core.scoring import interpolate
    from ranking_gateway.evaluation.metrics import ndcg_at_k

    out: dict[str, float] = {}
    for qid, text in judged.queries.items():
        cands = [(d, s) for d, s in judged.candidates.get(qid, []) if d in row_of]
        if not cands:
            out[qid] = 0.0
            continue
        scores = model.scores(text, [row_of[d] for d, _ in cands])
        mixed = interpolate([s for _, s in cands], scores, alpha)
        ranking = [cands[i][0] for i in np.argsort(-mixed, kind="stable")]
        out[qid] = ndcg_at_k(ranking, judged.qrels.get(qid, {}))
    return out


def click_ranks(model: RerankerModel, examples: Sequence[ClickExample]) -> list[int]:
    ranks = []
    for ex in examples:
        scores = model.scores(ex.query, [ex.clicked, *ex.others])
        ranks.append(ex.rank(float(scores[0]), scores[1:]))
    return ranks


def evaluate(model: RerankerModel, held: Sequence[ClickExample], judged: JudgedQueries, row_of: dict[str, int],
             config: RerankerRoundConfig) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics, per-query judged NDCG@10)."""
    per_query = judged_ndcg(model, judged, row_of, config.alpha)
    eta, cap = config.train.eta, config.train.max_weight
    return {"judged_ndcg@10": float(np.mean(list(per_query.values()))),
            "ips_mean_rank": ips_mean_rank(held, click_ranks(model, held), eta, cap)}, per_query


def gate(serving: dict[str, float], candidate: dict[str, float], random_rank: float,
         config: RerankerRoundConfig, reference_ndcg: float | None = None) -> list[dict[str, Any]]:
    cand_rank = candidate["ips_mean_rank"]
    checks = [
        {"name": "signal", "candidate": cand_rank, "limit": random_rank * (1 - config.margin),
         "rule": "IPS mean rank <= a random order's * (1 - margin)"},
        {"name": "clicks", "candidate": cand_rank, "limit": serving["ips_mean_rank"] * (1 + config.margin),
         "rule": "IPS mean rank <= serving's * (1 + margin)"},
        {"name": "judged", "candidate": candidate["judged_ndcg@10"], "limit": serving["judged_ndcg@10"] - config.ndcg_margin,
         "rule": "judged NDCG@10 >= serving's - ndcg_margin"},
    ]
    if reference_ndcg is not None:
        checks.append({"name": "judged_vs_reference", "candidate": candidate["judged_ndcg@10"],
                       "limit": reference_ndcg - config.ndcg_margin,
                       "rule": "judged NDCG@10 >= the reference's (before the first learnt round) - ndcg_margin"})
    for check in checks:
        higher_is_better = check["name"].startswith("judged")
        check["passed"] = bool(check["candidate"] >= check["limit"] if higher_is_better else check["candidate"] <= check["limit"])
    return checks


def run_reranker_round(
    records: Sequence[dict[str, Any]], load: Callable[[], RerankerModel], row_of: dict[str, int],
    judged: JudgedQueries, config: RerankerRoundConfig, reference_ndcg: float | None = None,
) -> RerankerRoundResult:
    """`records`: the window (`personalizer_round.select_window`); `load`: a fresh copy of the
    serving model (called twice: the serving model and the candidate's starting point);
    `reference_ndcg`: the judged NDCG@10 the learner recorded before its first round, if any."""
    examples = click_examples(records, row_of)
    train, held = split_by_request(examples, config.holdout)
    counts = {"clicks": len(examples), "train_clicks": len(train), "heldout_clicks": len(held),
              "judged_queries": len(judged.queries)}
    result = RerankerRoundResult(SKIPPED, "", counts)
    if len(examples) < config.min_clicks:
        result.reason = f"{len(examples)} new clicks with a query and unclicked results (< --min-clicks {config.min_clicks})"
        return result
    if not train or not held or not judged.queries:
        result.reason = "no held-out clicks, no training clicks or no judged queries"
        return result
    serving = load()
    serving_metrics, serving_per_query = evaluate(serving, held, judged, row_of, config)
    candidate = load()
    started = time.perf_counter()
    result.train_losses = candidate.train(train, config.train)
    result.train_seconds = time.perf_counter() - started
    candidate_metrics, candidate_per_query = evaluate(candidate, held, judged, row_of, config)
    eta, cap = config.train.eta, config.train.max_weight
    random_rank = ips_mean_rank(held, [1 + len(e.others) / 2 for e in held], eta, cap)
    logged_rank = ips_mean_rank(held, [1 + e.skipped_above for e in held], eta, cap)
    diffs = np.array([candidate_per_query[q] - serving_per_query[q] for q in judged.queries])
    result.metrics = {
        "serving": serving_metrics,
        "candidate": candidate_metrics,
        "random": {"ips_mean_rank": random_rank},
        "logged": {"ips_mean_rank": logged_rank},
        "judged_difference": {"mean": float(diffs.mean()),
                              "standard_error": float(diffs.std(ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else 0.0},
    }
    result.checks = gate(serving_metrics, candidate_metrics, random_rank, config, reference_ndcg)
    failed = [c["name"] for c in result.checks if not c["passed"]]
    result.verdict = REFUSED if failed else DEPLOY
    result.reason = f"failed {', '.join(failed)}" if failed else "passed " + ", ".join(c["name"] for c in result.checks)
    result.candidate = candidate
    return result


def config_json(config: RerankerRoundConfig) -> dict[str, Any]:
    return asdict(config)
