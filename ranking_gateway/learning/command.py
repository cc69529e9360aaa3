"""`ranking-gateway learn`: one scheduled learning round for the personaliser's weights.

Run it from cron or a Kubernetes CronJob. A round reads the impressions logged since the last
round (the cursor in `--workdir/state.json`) with their clicks, fits candidate weights on part of
the requests (`train-personalizer`'s code), compares them with the weights the gateway serves on
the other requests (log-loss, AUC, position-debiased clicks@k), and deploys them through the
gateway's live swap (`deploy --personalizer-weights`) only when they are not worse by `--margin`.
Every round writes a report (`reports/round-NNNN.json` and `.png`); deployed weights stay in
`weights/weights-vNNNN.json` (roll back with `ranking-gateway deploy --rollback`, or deploy any
older file). A refused candidate or a skipped round (too few new clicks) exits 0: both are
normal outcomes; errors exit non-zero.

Not automated here: the reranker. Retrain it by hand from the same log with
`ranking-gateway train-reranker --source events`, build, and `ranking-gateway deploy --artifacts`.

The gateway resolves the weights path on its own machine: the workdir must be visible to it
under the same absolute path (same host, or the same volume mounted at the same place).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from ranking_gateway.core.errors import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "learn",
        help="one scheduled round: retrain the personaliser's weights on new clicks, gate, deploy (not the reranker)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--events", required=True,
                   help="the event log: a file, a log directory (all segments), or a redis:// URL (the event stream)")
    p.add_argument("--redis-stream", default="rg:events", help="stream name with a redis:// --events")
    p.add_argument("--workdir", required=True, type=Path,
                   help="the learner's state, reports and weights versions (visible to the gateway at the same path)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway (default http://127.0.0.1:8000)")
    p.add_argument("--api-key-file", type=Path, help="the first key in this file is sent (needed with serve --api-key-file)")
    p.add_argument("--margin", type=float, default=0.01,
                   help="how much worse the candidate may be: relative for log-loss, absolute for AUC (default 0.01)")
    p.add_argument("--min-clicks", type=int, default=100,
                   help="skip the round (the clicks wait for the next one) below this many new clicks (default 100)")
    p.add_argument("--holdout", type=float, default=0.2, help="fraction of the new requests held out (default 0.2)")
    p.add_argument("--l2", type=float, default=1.0, help="L2 penalty on the non-bias weights (default 1.0)")
    p.add_argument("--position-bias", action="store_true",
                   help="fit with a log(position) term (train-personalizer --position-bias); its weight sets the "
                        "propensity exponent of the clicks@k metric (else 1)")
    p.add_argument("--k", type=int, default=3, help="top k of the position-debiased clicks@k metric (default 3)")
    p.add_argument("--settle", type=float, default=300.0, metavar="SECONDS",
                   help="impressions this recent (before the newest record) wait for their clicks (default 300)")
    p.add_argument("--serving-weights", type=Path,
                   help="compare with these weights instead of those the gateway serves (GET /v1/admin/deploy)")
    p.add_argument("--dry-run", action="store_true",
                   help="evaluate and write reports/dry-run.json; deploy nothing and leave the state alone")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the gateway's answers")
    p.set_defaults(handler=run)


def gateway_status(url: str, api_key_file: Path | None, timeout: float) -> dict[str, Any]:
    """`GET /v1/admin/deploy`: what the gateway serves, and what it served before."""
    import httpx

    from ranking_gateway.serving.deploy_command import _key

    key = _key(api_key_file)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        answer = httpx.get(url.rstrip("/") + "/v1/admin/deploy", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise CliError(f"could not reach the gateway at {url}: {exc} (or compare with --serving-weights FILE)") from None
    if answer.status_code != 200:
        raise CliError(f"GET {url}/v1/admin/deploy answered {answer.status_code}: {answer.text[:300]}")
    return answer.json()


def serving_scorer(args: argparse.Namespace) -> tuple[Any, str]:
    """(the serving weights as a scorer, where they came from)."""
    from ranking_gateway.personalization.scorer import PersonalScorer

    def load(path: Path) -> PersonalScorer:
        try:
            return PersonalScorer.load(path)
        except (OSError, ValueError) as exc:
            raise CliError(f"{path}: cannot read the serving weights ({exc})") from None

    if args.serving_weights is not None:
        return load(args.serving_weights), str(args.serving_weights)
    current = (gateway_status(args.url, args.api_key_file, args.timeout).get("current") or {}).get("personalizer_weights")
    if current is None:
        return PersonalScorer(), "the scorer's defaults (the gateway serves no weights file)"
    path = Path(current)
    if not path.exists():  # the gateway's path on another machine: our copy of a version we deployed
        local = args.workdir / "weights" / path.name
        if not local.exists():
            raise CliError(f"the gateway serves {current}, which is not readable here (give --serving-weights FILE)")
        path = local
    return load(path), current


def deploy_weights(args: argparse.Namespace, weights: Path) -> tuple[int, Any]:
    """`deploy --personalizer-weights` through its own client; (exit status, the gateway's report)."""
    from ranking_gateway.serving import deploy_command

    request = argparse.Namespace(
        artifacts=None, rollback=False, personalizer_weights=weights, url=args.url, warm=0,
        drain_timeout=None, api_key_file=args.api_key_file, timeout=args.timeout,
    )
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # its JSON goes into our report, stdout keeps one line
        status = deploy_command.run(request)
    text = printed.getvalue()
    try:
        return status, json.loads(text) if text.strip() else None
    except ValueError:
        return status, text


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary(result: Any) -> str:
    s, c = result.metrics.get("serving", {}), result.metrics.get("candidate", {})
    return (f"held-out calibrated log-loss {_fmt(s.get('log_loss_calibrated'))} -> {_fmt(c.get('log_loss_calibrated'))}, "
            f"AUC {_fmt(s.get('auc'), 3)} -> {_fmt(c.get('auc'), 3)}, "
            f"IPS clicks@k {_fmt(s.get('ips_clicks_at_k'), 3)} -> {_fmt(c.get('ips_clicks_at_k'), 3)}; "
            f"{result.counts.get('clicks')} new clicks")


def run(args: argparse.Namespace) -> int:
    from ranking_gateway.learning import report as reports
    from ranking_gateway.learning.personalizer_round import DEPLOY, REFUSED, SKIPPED, RoundConfig, run_round
    from ranking_gateway.learning.state import LearnState, workdir_lock
    from ranking_gateway.personalization.command import load_records

    try:
        config = RoundConfig(margin=args.margin, min_clicks=args.min_clicks, holdout=args.holdout, l2=args.l2,
                             position_bias=args.position_bias, k=args.k, settle_s=args.settle)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    workdir: Path = args.workdir.resolve()
    args.workdir = workdir
    started = time.time()
    with workdir_lock(workdir):
        state = LearnState.load(workdir)
        serving, serving_source = serving_scorer(args)
        records = load_records(args.events, args.redis_stream)
        result = run_round(records, serving, state.cursor_ts, config)
        number = state.next_round
        report = reports.build_report(
            result, round_number=number, serving=serving, serving_source=serving_source, started_at=started,
            config={**dataclasses.asdict(config), "events": args.events, "dry_run": args.dry_run},
        )
        stem = "dry-run" if args.dry_run else f"round-{number:04d}"
        json_path, png_path = workdir / "reports" / f"{stem}.json", workdir / "reports" / f"{stem}.png"
        chart = reports.write_chart(png_path, report)
        report["chart"] = None if chart is None else str(chart)
        run_record: dict[str, Any] = {
            "round": number, "started_at": started, "verdict": result.verdict, "reason": result.reason,
            "cursor_from": result.window.cursor_from, "cursor_to": result.window.cursor_to,
            "clicks": result.counts.get("clicks"), "report": str(json_path.relative_to(workdir)),
        }
        status = 0
        if args.dry_run:
            verdict = {DEPLOY: "would deploy", REFUSED: "would refuse", SKIPPED: "would skip"}[result.verdict]
            line = f"learn dry run: {verdict} ({result.reason})"
        elif result.verdict == SKIPPED:
            line = f"learn round {number}: skipped: {result.reason}"
        elif result.verdict == REFUSED:
            state.cursor_ts = result.window.cursor_to
            line = f"learn round {number}: refused ({result.reason}), the gateway keeps its weights: {summary(result)}"
        else:
            version = state.next_version
            weights_path = workdir / "weights" / f"weights-v{version:04d}.json"
            weights_path.parent.mkdir(parents=True, exist_ok=True)
            body = {**result.candidate.to_json(), "learning": {"round": number, "metrics": result.metrics}}
            weights_path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
            try:
                deploy_status, deployed = deploy_weights(args, weights_path)
            except CliError as exc:
                deploy_status, deployed = 2, str(exc)
            report["deploy"] = {"status": deploy_status, "weights": str(weights_path), "gateway": deployed}
            if deploy_status == 0:
                state.cursor_ts = result.window.cursor_to
                state.versions.append({"version": version, "weights": str(weights_path.relative_to(workdir)),
                                       "round": number, "deployed_at": time.time(), "replaced": serving_source})
                run_record["version"] = version
                line = (f"learn round {number}: deployed weights-v{version:04d} ({result.reason}): {summary(result)}")
            else:
                run_record["verdict"] = "deploy_failed"
                report["verdict"] = "deploy_failed"
                line = (f"learn round {number}: the candidate passed the gate but the gateway did not take it "
                        f"({deployed if isinstance(deployed, str) else 'see above'}); the cursor stays")
                status = 1
        reports.write_json(json_path, report)
        if not args.dry_run:
            run_record["finished_at"] = time.time()
            state.runs.append(run_record)
            state.save()
    print(f"{line}; report {json_path}", file=sys.stdout if status == 0 else sys.stderr)
    return status
