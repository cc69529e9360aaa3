"""One learning round for the personaliser's weights: the impressions logged since the cursor,
joined with their clicks, a candidate fitted on part of the requests, and the gate that compares
it with the serving weights on the rest.

Everything here reuses `personalization.trainer` (the join, the split by a hash of the
request id, the logistic fits, log-loss and AUC): a round is `train-personalizer` on a window of
the log, plus the comparison and the decision. No I/O: `learning.command` reads the log, asks the
gateway and deploys.

The window: impressions whose `ts` is after the cursor and at most `settle_s` before the newest
record of the log (an impression's clicks come after it: the newest ones wait for the next round,
so that they are not learnt as unclicked). Clicks are joined whenever they were logged. An
impression without `ts` counts as logged at time 0 (the first round takes it).

Metrics on the held-out requests, for the serving weights and the candidate:

* `log_loss`: of sigma(W^T f) as the scorer computes it. The serving weights are a ranking, not
  a calibrated click probability (the defaults were set by hand), so this one mostly measures
  calibration; it is reported, not gated;
* `log_loss_calibrated`: after a Platt fit (a >= 0, b in sigma(a * W^T f + b)) of each model on
  the training requests: the information the ranking holds about clicks, whatever its scale. With
  `position_bias`, the fit has a log(position) term too (sigma(a * W^T f + c * log p + b)): the
  held-out clicks are position-biased, and both models get the same chance to account for it.
  Gated;
* `auc`: of W^T f against the clicks, over every held-out shown document (with `position_bias`:
  of the calibrated logit, position term included). Gated;
* `ips_clicks_at_k`: the held-out impressions re-ranked by the model (with the scorer's protected
  head), and each click in the new top k counted with weight 1/propensity of the position it was
  clicked at, propensity = position^-eta (eta = -the fitted log-position weight with
  `--position-bias`, else 1): the position-debiased estimate of the clicked documents a ranking
  would put in the top k, per request. Reported (with the logged order's value), not gated.

The gate, with `margin` (relative for log-losses, absolute for AUC): the candidate deploys when

1. `signal`: its calibrated log-loss is below that of the click rate alone by at least the
   margin (relative): a fit on noise carries no ranking, whatever the serving weights do;
2. `log_loss`: its calibrated log-loss is at most the serving one's * (1 + margin);
3. `auc`: its AUC is at least the serving one's - margin.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ranking_gateway.personalization.scorer import FEATURE_NAMES, PersonalScorer, sigmoid
from ranking_gateway.personalization.trainer import (
    Dataset,
    auc,
    build_dataset,
    fit_logistic,
    fit_position_debiased,
    holdout_mask,
    log_loss,
)

SKIPPED, DEPLOY, REFUSED = "skipped", "deploy", "refused"


@dataclass(frozen=True)
class RoundConfig:
    margin: float = 0.01  # relative for log-loss, absolute for AUC
    min_clicks: int = 100  # fewer clicks joined to the window's impressions: skip (the cursor stays)
    holdout: float = 0.2  # fraction of the window's requests held out
    l2: float = 1.0  # the trainer's L2 penalty
    position_bias: bool = False  # fit with the trainer's log(position) term
    k: int = 3  # top k of the IPS click metric
    settle_s: float = 300.0  # impressions this close to the newest record wait for their clicks

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise ValueError("holdout must be in (0, 1)")
        if self.margin < 0 or self.min_clicks < 1 or self.k < 1 or self.settle_s < 0:
            raise ValueError("margin and settle_s must be >= 0, min_clicks and k >= 1")


@dataclass(frozen=True)
class Window:
    cursor_from: float | None
    cursor_to: float | None  # the cursor after this round, if it is consumed
    impressions: int
    records: list[dict[str, Any]]  # the window's impressions and every event (the join's input)


@dataclass
class RoundResult:
    verdict: str  # SKIPPED, DEPLOY or REFUSED
    reason: str
    window: Window
    counts: dict[str, int] = field(default_factory=dict)
    candidate: PersonalScorer | None = None
    position_weight: float | None = None  # the fitted log-position weight (--position-bias)
    eta: float = 1.0  # the propensity exponent of the IPS metric
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)  # model -> metric -> value
    checks: list[dict[str, Any]] = field(default_factory=list)


def _ts(record: dict[str, Any]) -> float:
    try:
        return float(record.get("ts") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def select_window(records: Iterable[dict[str, Any]], cursor: float | None, settle_s: float) -> Window:
    """The impressions after `cursor` and settled (`settle_s` before the newest record), with
    every event."""
    records = list(records)
    if not records:
        return Window(cursor, cursor, 0, [])
    horizon = max(_ts(r) for r in records) - settle_s
    low = -np.inf if cursor is None else cursor
    chosen: list[dict[str, Any]] = []
    newest: float | None = None
    for record in records:
        if record.get("kind") == "impression":
            ts = _ts(record)
            if not low < ts <= horizon:
                continue
            newest = ts if newest is None else max(newest, ts)
        chosen.append(record)
    impressions = sum(1 for r in chosen if r.get("kind") == "impression")
    return Window(cursor, cursor if newest is None else newest, impressions, chosen)


def _calibrated_logits(z: np.ndarray, log_pos: np.ndarray | None, train: np.ndarray, y: np.ndarray) -> np.ndarray:
    """a * z (+ c * log position) + b, fitted on the training rows with the trainer's logistic fit
    (Platt scaling, with the position term when the round models the position bias). A score
    that predicts clicks backwards (a < 0) is not turned around: it gets a = 0, no information."""
    columns = [z] + ([log_pos] if log_pos is not None else []) + [np.ones_like(z)]
    x = np.column_stack(columns)
    w = fit_logistic(x[train], y[train], l2=1e-6)
    if w[0] < 0:
        w = np.concatenate([[0.0], fit_logistic(x[train][:, 1:], y[train], l2=1e-6)])
    return x @ w


def ips_clicks_at_k(data: Dataset, mask: np.ndarray, scorer: PersonalScorer | None, k: int, eta: float) -> float:
    """Per request of `mask`: the clicks in the top k of the re-ranking by `scorer` (None: the
    logged order), each weighted position^eta (1/propensity of the position it was shown at)."""
    rows: dict[str, list[int]] = defaultdict(list)
    for i in np.flatnonzero(mask):
        rows[data.request_ids[i]].append(int(i))
    if not rows:
        return 0.0
    positions = data.positions if data.positions is not None else np.ones(len(data.labels))
    total = 0.0
    for idx in rows.values():
        idx_arr = np.array(sorted(idx, key=lambda i: positions[i]))  # the logged order
        if scorer is None:
            top = idx_arr[:k]
        else:
            order, _ = scorer.rank(data.features[idx_arr])
            top = idx_arr[order[:k]]
        clicked = top[data.labels[top] > 0]
        total += float(np.sum(positions[clicked] ** eta))
    return total / len(rows)


def _metrics(
    data: Dataset, train: np.ndarray, test: np.ndarray, scorer: PersonalScorer, config: RoundConfig, eta: float
) -> dict[str, float | None]:
    z = data.features @ scorer.weights
    y = data.labels
    log_pos = np.log(data.positions) if config.position_bias else None
    calibrated = _calibrated_logits(z, log_pos, train, y)
    return {
        "log_loss": log_loss(y[test], sigmoid(z[test])),
        "log_loss_calibrated": log_loss(y[test], sigmoid(calibrated[test])),
        # with the position term, the AUC is of the calibrated logit: the clicks held out are
        # position-biased, and both models get the same chance to account for it
        "auc": auc(y[test], calibrated[test] if config.position_bias else z[test]),
        "ips_clicks_at_k": ips_clicks_at_k(data, test, scorer, config.k, eta),
    }


def gate(
    serving: dict[str, float | None], candidate: dict[str, float | None], base_log_loss: float, margin: float
) -> list[dict[str, Any]]:
    """The gate's checks, each {name, passed, candidate, limit, rule}."""
    cand_ll, serv_ll = candidate["log_loss_calibrated"], serving["log_loss_calibrated"]
    checks = [
        {"name": "signal", "candidate": cand_ll, "limit": base_log_loss * (1 - margin),
         "rule": "calibrated log-loss <= click-rate-only log-loss * (1 - margin)"},
        {"name": "log_loss", "candidate": cand_ll, "limit": serv_ll * (1 + margin),
         "rule": "calibrated log-loss <= serving's * (1 + margin)"},
    ]
    if candidate["auc"] is not None and serving["auc"] is not None:
        checks.append({"name": "auc", "candidate": candidate["auc"], "limit": serving["auc"] - margin,
                       "rule": "AUC >= serving's - margin"})
    for check in checks:
        value, limit = check["candidate"], check["limit"]
        check["passed"] = bool(value >= limit if check["name"] == "auc" else value <= limit)
    return checks


def run_round(
    records: Iterable[dict[str, Any]], serving: PersonalScorer, cursor: float | None, config: RoundConfig
) -> RoundResult:
    """Select the window, fit the candidate, evaluate both and decide."""
    window = select_window(records, cursor, config.settle_s)
    data = build_dataset(window.records)
    test = holdout_mask(data.request_ids, config.holdout).astype(bool)  # (float when empty)
    train = ~test
    counts = {
        "impressions": window.impressions,
        "examples": int(len(data.labels)),
        "clicks": int(data.labels.sum()),
        "train_examples": int(train.sum()),
        "heldout_examples": int(test.sum()),
        "train_clicks": int(data.labels[train].sum()),
        "heldout_clicks": int(data.labels[test].sum()),
    }
    result = RoundResult(SKIPPED, "", window, counts)
    if counts["clicks"] < config.min_clicks:
        result.reason = f"{counts['clicks']} new clicks joined to {window.impressions} impressions (< --min-clicks {config.min_clicks})"
        return result
    for part in ("train", "heldout"):
        n, clicks = counts[f"{part}_examples"], counts[f"{part}_clicks"]
        if clicks == 0 or clicks == n:
            result.reason = f"the {part} requests have a single class ({clicks} clicks of {n} shown documents)"
            return result
    if config.position_bias:
        weights, position_weight = fit_position_debiased(
            data.features[train], data.labels[train], data.positions[train], l2=config.l2
        )
        result.position_weight = position_weight
        result.eta = max(0.0, -position_weight)
    else:
        weights = fit_logistic(data.features[train], data.labels[train], l2=config.l2)
    candidate = dataclasses.replace(serving, weights=weights)  # the serving scorer's other settings kept
    result.candidate = candidate
    result.metrics = {
        "serving": _metrics(data, train, test, serving, config, result.eta),
        "candidate": _metrics(data, train, test, candidate, config, result.eta),
        "logged": {"ips_clicks_at_k": ips_clicks_at_k(data, test, None, config.k, result.eta)},
    }
    rate = float(np.clip(data.labels[train].mean(), 1e-6, 1 - 1e-6))
    base = log_loss(data.labels[test], np.full(int(test.sum()), rate))
    result.metrics["click_rate_only"] = {"log_loss": base, "log_loss_calibrated": base}
    result.checks = gate(result.metrics["serving"], result.metrics["candidate"], base, config.margin)
    failed = [c["name"] for c in result.checks if not c["passed"]]
    result.verdict = REFUSED if failed else DEPLOY
    result.reason = f"failed {', '.join(failed)}" if failed else "passed " + ", ".join(c["name"] for c in result.checks)
    return result


def weights_json(scorer: PersonalScorer) -> dict[str, float]:
    return {n: float(w) for n, w in zip(FEATURE_NAMES, scorer.weights)}
