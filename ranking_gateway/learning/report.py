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


def _figure_modules():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        log.warning("no chart: matplotlib is not installed (pip install 'ranking-gateway[eval]')")
        return None
    return Figure, FigureCanvasAgg


def _bar_panels(path: Path, panels: list[dict[str, Any]], title: str) -> Path | None:
    """One panel per metric, serving vs candidate, each {title, serving, candidate, baseline?}."""
    modules = _figure_modules()
    if modules is None or not panels:
        return None
    Figure, FigureCanvasAgg = modules
    fig = Figure(figsize=(3.2 * len(panels), 3.6))
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        values = [panel["serving"], panel["candidate"]]
        bars = ax.bar(["serving", "candidate"], values, color=["#8c8c8c", "#2b7bba"])
        ax.bar_label(bars, labels=[f"{v:.4f}" for v in values], fontsize=8)
        if panel.get("baseline") is not None:
            label, value = panel["baseline"]
            ax.axhline(value, color="#c0392b", linestyle="--", linewidth=1, label=f"{label} {value:.4f}")
            ax.legend(fontsize=7, loc="lower center")
        ax.set_title(panel["title"], fontsize=9)
        ax.margins(y=0.15)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def write_chart(path: Path, report: dict[str, Any]) -> Path | None:
    """The personaliser's panels; None (and a warning) without matplotlib or without metrics (a
    skipped round)."""
    metrics = report.get("metrics") or {}
    serving, candidate = metrics.get("serving"), metrics.get("candidate")
    if not serving or not candidate:
        return None
    panels = []
    for name, note in CHART_METRICS:
        if serving.get(name) is None or candidate.get(name) is None:
            continue
        title = f"{name} (k={report['config']['k']})" if name == "ips_clicks_at_k" and "k" in report.get("config", {}) else name
        base = (metrics.get("click_rate_only") or {}).get(name) if name == "log_loss_calibrated" else None
        panels.append({"title": f"{title}\n({note})", "serving": serving[name], "candidate": candidate[name],
                       "baseline": None if base is None else ("click rate only", base)})
    which = "dry run" if report.get("config", {}).get("dry_run") else f"round {report.get('round')}"
    return _bar_panels(path, panels, f"learn {which}: {report.get('verdict', '?')} "
                                     f"(held-out requests, {report['counts'].get('heldout_clicks')} clicks)")


def write_reranker_chart(path: Path, reranker: dict[str, Any], round_number: int) -> Path | None:
    """The reranker's panels: judged NDCG@10 and the held-out clicks' IPS mean rank (a random
    order's drawn as the no-signal line)."""
    metrics = reranker.get("metrics") or {}
    serving, candidate = metrics.get("serving"), metrics.get("candidate")
    if not serving or not candidate:
        return None
    panels = [
        {"title": f"judged NDCG@10\n({reranker['counts'].get('judged_queries')} queries; higher is better)",
         "serving": serving["judged_ndcg@10"], "candidate": candidate["judged_ndcg@10"]},
        {"title": "held-out clicks: IPS mean rank\n(lower is better)", "serving": serving["ips_mean_rank"],
         "candidate": candidate["ips_mean_rank"], "baseline": ("random order", metrics["random"]["ips_mean_rank"])},
    ]
    return _bar_panels(path, panels, f"learn round {round_number}, reranker: {reranker.get('verdict', '?')} "
                                     f"({reranker['counts'].get('heldout_clicks')} held-out clicks)")
