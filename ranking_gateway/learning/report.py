"""A round's report: JSON (everything the decision used) and a PNG bar chart of the serving
weights against the candidate on each held-out metric. matplotlib (the `eval` extra) is imported
here only, when the chart is drawn; without it the round still runs and the JSON says why there
is no chart."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ranking_gateway.learning.personalizer_round import RoundResult, weights_json
from ranking_gateway.personalization.scorer import PersonalScorer

log = logging.getLogger(__name__)

# the metrics drawn, in order, with their direction
CHART_METRICS: tuple[tuple[str, str], ...] = (
    ("log_loss", "lower is better"),
    ("log_loss_calibrated", "lower is better"),
    ("auc", "higher is better"),
    ("ips_clicks_at_k", "higher is better"),
)


def build_report(result: RoundResult, *, round_number: int, serving: PersonalScorer, serving_source: str,
                 config: dict[str, Any], started_at: float) -> dict[str, Any]:
    return {
        "round": round_number,
        "started_at": started_at,
        "verdict": result.verdict,
        "reason": result.reason,
        "config": config,
        "window": {"cursor_from": result.window.cursor_from, "cursor_to": result.window.cursor_to,
                   "impressions": result.window.impressions},
        "counts": result.counts,
        "position_bias": {"log_position_weight": result.position_weight, "eta": result.eta},
        "metrics": result.metrics,
        "gate": {"checks": result.checks, "passed": result.verdict == "deploy"},
        "weights": {
            "serving": weights_json(serving),
            "serving_source": serving_source,
            "candidate": None if result.candidate is None else weights_json(result.candidate),
        },
        "deploy": None,
        "chart": None,
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_chart(path: Path, report: dict[str, Any]) -> Path | None:
    """One panel per metric, serving vs candidate; None (and a warning) without matplotlib or
    without metrics (a skipped round)."""
    metrics = report.get("metrics") or {}
    serving, candidate = metrics.get("serving"), metrics.get("candidate")
    if not serving or not candidate:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        log.warning("no chart: matplotlib is not installed (pip install 'ranking-gateway[eval]')")
        return None
    shown = [(name, note) for name, note in CHART_METRICS if serving.get(name) is not None and candidate.get(name) is not None]
    fig = Figure(figsize=(3.2 * len(shown), 3.6))
    FigureCanvasAgg(fig)
    for i, (name, note) in enumerate(shown, start=1):
        ax = fig.add_subplot(1, len(shown), i)
        values = [serving[name], candidate[name]]
        bars = ax.bar(["serving", "candidate"], values, color=["#8c8c8c", "#2b7bba"])
        ax.bar_label(bars, labels=[f"{v:.4f}" for v in values], fontsize=8)
        if name == "log_loss_calibrated" and (base := (metrics.get("click_rate_only") or {}).get(name)) is not None:
            ax.axhline(base, color="#c0392b", linestyle="--", linewidth=1, label=f"click rate only {base:.4f}")
            ax.legend(fontsize=7, loc="lower center")
        title = f"{name} (k={report['config']['k']})" if name == "ips_clicks_at_k" and "k" in report.get("config", {}) else name
        ax.set_title(f"{title}\n({note})", fontsize=9)
        ax.margins(y=0.15)
    verdict = report.get("verdict", "?")
    which = "dry run" if report.get("config", {}).get("dry_run") else f"round {report.get('round')}"
    fig.suptitle(f"learn {which}: {verdict} (held-out requests, {report['counts'].get('heldout_clicks')} clicks)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
