"""`ranking-gateway learn`: one scheduled learning round: the personaliser's weights and, with
`--judged`, the reranker (a late-interaction reranker's query side, or a whole cross-encoder).

Run it from cron or a Kubernetes CronJob. A round reads the impressions logged since the last
round (the cursor in `--workdir/state.json`) with their clicks, and for each model fits a
candidate on part of the requests and compares it with what the gateway serves on the rest:

* personaliser weights (`train-personalizer`'s code): log-loss, AUC, position-debiased clicks@k;
* reranker (`--judged DIR`): the serving model warm-started and trained on the clicks,
  propensity-weighted by the position each click was at; gated on held-out clicks and on the
  judged queries of `--judged` (NDCG@10 of the gateway's first-stage candidates reranked).

What passes is deployed in one live swap (`deploy --artifacts … --personalizer-weights …`):
the reranker as new artifacts that share the serving build's index (and token store): only its
Triton model is new (`ranking_build.model_swap`). Every round writes a report
(`reports/round-NNNN.json` and `.png`, `round-NNNN-reranker.png`); deployed versions stay in `weights/`, `rerankers/` and
`artifacts/` (roll back with `ranking-gateway deploy --rollback`, or deploy any older one). A
refused candidate or a skipped round (too few new clicks) exits 0: both are normal outcomes;
errors exit non-zero.

The gateway resolves the paths on its own machine: the workdir must be visible to it under
the same absolute path (same host, or the same volume mounted at the same place).
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
        help="one scheduled round: retrain the personaliser's weights (and, with --judged, the reranker) on new clicks, gate, deploy",
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
    p.add_argument("--no-personalizer", action="store_true", help="learn the reranker only (with --judged)")
    rr = p.add_argument_group("reranker (a late-interaction build's query side, or a whole cross-encoder)")
    rr.add_argument("--judged", type=Path, metavar="DIR",
                    help="learn the reranker too, gated on this BEIR collection's judged queries (never trained on)")
    rr.add_argument("--judged-split", default="test", help="qrels split of --judged (default test)")
    rr.add_argument("--judged-fraction", type=float, default=1.0,
                    help="use only this fraction of the split, held out as `train-reranker --heldout-fraction` "
                         "holds it out with --judged-seed (default 1: all of it)")
    rr.add_argument("--judged-seed", type=int, default=13, help="seed of that split (train-reranker's --seed, default 13)")
    rr.add_argument("--ndcg-margin", type=float, default=0.005,
                    help="how much lower the candidate's judged NDCG@10 may be (absolute, default 0.005)")
    rr.add_argument("--serving-reranker", type=Path,
                    help="the served reranker's directory (default: the one the served manifest names)")
    rr.add_argument("--reranker-epochs", type=int, default=1, help="passes over the new clicks (default 1)")
    rr.add_argument("--reranker-lr", type=float, default=1e-5,
                    help="learning rate of the query Transformer, or of the whole cross-encoder (default 1e-5)")
    rr.add_argument("--eta", type=float, default=1.0,
                    help="examination propensity exponent: a click at position p weighs p**eta (default 1)")
    p.add_argument("--dry-run", action="store_true",
                   help="evaluate and write reports/dry-run.json; deploy nothing and leave the state alone")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the gateway's answers")
    p.set_defaults(handler=run)


def gateway_status(url: str, api_key_file: Path | None, timeout: float) -> dict[str, Any]:
    """`GET /v1/admin/deploy`: what the gateway serves, and what it served before."""
    import httpx

    from ranking_gateway.serving.deploy_command import auth_headers

    headers = auth_headers(api_key_file)
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


def deploy(args: argparse.Namespace, weights: Path | None, artifacts: Path | None) -> tuple[int, Any]:
    """`deploy --artifacts/--personalizer-weights` through its own client; (exit status, the gateway's report)."""
    from ranking_gateway.serving import deploy_command

    request = argparse.Namespace(
        artifacts=artifacts, rollback=False, personalizer_weights=weights, url=args.url, warm=0,
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


def reranker_summary(result: Any) -> str:
    s, c = result.metrics.get("serving", {}), result.metrics.get("candidate", {})
    return (f"judged NDCG@10 {_fmt(s.get('judged_ndcg@10'))} -> {_fmt(c.get('judged_ndcg@10'))}, "
            f"held-out IPS mean rank {_fmt(s.get('ips_mean_rank'), 3)} -> {_fmt(c.get('ips_mean_rank'), 3)}; "
            f"{result.counts.get('clicks')} new clicks")


def learn_reranker(args: argparse.Namespace, records: list[dict[str, Any]], state: Any) -> dict[str, Any]:
    """The reranker's round: {result, serving artifacts, serving reranker directory, config};
    records the judged reference in `state` on the first round that evaluates (per judged set)."""
    from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
    from ranking_gateway.core.corpus import read_corpus
    from ranking_gateway.learning import reranker_learning
    from ranking_gateway.learning.query_side import QueryTrainConfig
    from ranking_gateway.learning.reranker_round import RerankerRoundConfig, run_reranker_round

    plan = reranker_learning.readiness(args.url, args.timeout)["rerank"]
    current = gateway_status(args.url, args.api_key_file, args.timeout).get("current") or {}
    artifacts = Path(current["artifacts"])
    if not artifacts.is_dir():
        raise CliError(f"the gateway serves {artifacts}, which is not readable here (run learn where it is)")
    manifest = Manifest.read(artifacts)
    assert manifest.reranker is not None  # readiness: a reranker is served
    kind = manifest.reranker.kind
    source = reranker_learning.serving_reranker(manifest.reranker.source, artifacts, args.serving_reranker, kind)
    try:
        config = RerankerRoundConfig(
            margin=args.margin, ndcg_margin=args.ndcg_margin, min_clicks=args.min_clicks, holdout=args.holdout,
            alpha=float(plan["alpha"]),
            train=QueryTrainConfig(epochs=args.reranker_epochs, lr=args.reranker_lr, eta=args.eta),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    paths = ArtifactPaths(artifacts)
    documents = read_corpus(paths.documents)
    row_of = {d.id: i for i, d in enumerate(documents)}
    if kind == "late-interaction":
        from ranking_gateway.core.token_store import TokenStore
        from ranking_gateway.learning.query_side import QuerySide

        assert manifest.token_store is not None
        store = TokenStore.open(paths.token_store, documents=manifest.token_store.documents, dim=manifest.token_store.dim)
        load = lambda: QuerySide(source, store)  # noqa: E731
    else:  # a cross-encoder, scored on the texts and at the token budget the gateway sends it
        from ranking_gateway.learning.cross_encoder import CrossEncoderModel

        texts = [d.full_text for d in documents]
        load = lambda: CrossEncoderModel(source, texts, int(plan["max_length"]))  # noqa: E731
    judged = reranker_learning.judged_queries(args, int(plan["depth"]))
    judged_key = f"{args.judged.resolve()}|{args.judged_split}|{args.judged_fraction}|{args.judged_seed}"
    reference = state.reranker_reference if (state.reranker_reference or {}).get("judged") == judged_key else None
    result = run_reranker_round(records, load, row_of, judged, config,
                                None if reference is None else float(reference["ndcg"]))
    if reference is None and result.metrics and not args.dry_run:
        state.reranker_reference = {"judged": judged_key, "ndcg": result.metrics["serving"]["judged_ndcg@10"],
                                    "reranker": str(source)}
    return {"result": result, "artifacts": artifacts, "source": source, "config": config, "kind": kind}


def _save_reranker(workdir: Path, version: int, learned: dict[str, Any], number: int) -> Path:
    """The passed candidate as a reranker directory, and artifacts around it; the artifacts' path."""
    result = learned["result"]
    directory = workdir / "rerankers" / f"v{version:04d}"
    result.candidate.save(directory, {"command": "learn", "round": number, "warm_start": str(learned["source"]),
                                      **result.to_json()})
    out = workdir / "artifacts" / f"v{version:04d}"
    if learned["kind"] == "late-interaction":
        from ranking_build.query_side import rebuild_query_side

        rebuild_query_side(learned["artifacts"], directory, out, document_reference=learned["source"])
    else:
        from ranking_build.cross_encoder_swap import rebuild_cross_encoder

        rebuild_cross_encoder(learned["artifacts"], directory, out)
    return out


def run(args: argparse.Namespace) -> int:
    from ranking_gateway.learning import report as reports
    from ranking_gateway.learning.personalizer_round import (
        DEPLOY,
        REFUSED,
        SKIPPED,
        RoundConfig,
        RoundResult,
        run_round,
        select_window,
    )
    from ranking_gateway.learning.state import LearnState, workdir_lock
    from ranking_gateway.personalization.command import load_records

    if args.no_personalizer and args.judged is None:
        raise CliError("--no-personalizer leaves nothing to learn without --judged DIR")
    if not 0.0 < args.judged_fraction <= 1.0:
        raise CliError("--judged-fraction must be in (0, 1]")
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
        if args.no_personalizer:
            result = RoundResult(SKIPPED, "not learnt (--no-personalizer)", select_window(records, state.cursor_ts, args.settle))
        else:
            result = run_round(records, serving, state.cursor_ts, config)
        learned = None
        if args.judged is not None:
            learned = learn_reranker(args, result.window.records, state)
        number = state.next_round
        report = reports.build_report(
            result, round_number=number, serving=serving, serving_source=serving_source, started_at=started,
            config={**dataclasses.asdict(config), "events": args.events, "dry_run": args.dry_run},
        )
        stem = "dry-run" if args.dry_run else f"round-{number:04d}"
        json_path, png_path = workdir / "reports" / f"{stem}.json", workdir / "reports" / f"{stem}.png"
        chart = reports.write_chart(png_path, report)
        report["chart"] = None if chart is None else str(chart)
        verdicts = [] if args.no_personalizer else [result.verdict]
        parts = [] if args.no_personalizer else [f"personaliser {result.verdict} ({result.reason})"
                                                 + (f": {summary(result)}" if result.metrics else "")]
        if learned is not None:
            rr = learned["result"]
            report["reranker"] = {**rr.to_json(), "serving": str(learned["source"]),
                                  "serving_artifacts": str(learned["artifacts"]),
                                  "config": dataclasses.asdict(learned["config"]), "chart": None}
            rr_chart = reports.write_reranker_chart(png_path.with_name(f"{stem}-reranker.png"), report["reranker"], number)
            report["reranker"]["chart"] = None if rr_chart is None else str(rr_chart)
            verdicts.append(rr.verdict)
            parts.append(f"reranker {rr.verdict} ({rr.reason})" + (f": {reranker_summary(rr)}" if rr.metrics else ""))
        overall = DEPLOY if DEPLOY in verdicts else REFUSED if REFUSED in verdicts else SKIPPED
        report["verdict"] = overall
        run_record: dict[str, Any] = {
            "round": number, "started_at": started, "verdict": overall, "reason": result.reason,
            "cursor_from": result.window.cursor_from, "cursor_to": result.window.cursor_to,
            "clicks": result.counts.get("clicks"), "report": str(json_path.relative_to(workdir)),
        }
        if learned is not None:
            run_record["reranker"] = {"verdict": learned["result"].verdict, "reason": learned["result"].reason}
        status = 0
        single = learned is None  # the personaliser alone: the lines it always printed
        if args.dry_run:
            verdict = {DEPLOY: "would deploy", REFUSED: "would refuse", SKIPPED: "would skip"}[overall]
            line = f"learn dry run: {verdict} ({result.reason})" if single else f"learn dry run: {verdict}: {'; '.join(parts)}"
        elif overall == SKIPPED:
            line = f"learn round {number}: skipped: " + (result.reason if single else "; ".join(parts))
        elif overall == REFUSED:
            state.cursor_ts = result.window.cursor_to
            line = (f"learn round {number}: refused ({result.reason}), the gateway keeps its weights: {summary(result)}"
                    if single else f"learn round {number}: refused, the gateway keeps what it serves: {'; '.join(parts)}")
        else:
            version = state.next_version
            weights_path = artifacts_path = None
            if result.verdict == DEPLOY and not args.no_personalizer:
                weights_path = workdir / "weights" / f"weights-v{version:04d}.json"
                weights_path.parent.mkdir(parents=True, exist_ok=True)
                body = {**result.candidate.to_json(), "learning": {"round": number, "metrics": result.metrics}}
                weights_path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
            if learned is not None and learned["result"].verdict == DEPLOY:
                artifacts_path = _save_reranker(workdir, version, learned, number)
            try:
                deploy_status, deployed = deploy(args, weights_path, artifacts_path)
            except CliError as exc:
                deploy_status, deployed = 2, str(exc)
            report["deploy"] = {"status": deploy_status, "gateway": deployed,
                                "weights": None if weights_path is None else str(weights_path),
                                "artifacts": None if artifacts_path is None else str(artifacts_path)}
            names = ", ".join(n for n, p in ((f"weights-v{version:04d}", weights_path),
                                             (f"reranker v{version:04d}", artifacts_path)) if p is not None)
            if deploy_status == 0:
                state.cursor_ts = result.window.cursor_to
                entry: dict[str, Any] = {"version": version, "round": number, "deployed_at": time.time(),
                                         "replaced": serving_source}
                if weights_path is not None:
                    entry["weights"] = str(weights_path.relative_to(workdir))
                if artifacts_path is not None:
                    entry["artifacts"] = str(artifacts_path.relative_to(workdir))
                    entry["replaced_artifacts"] = str(learned["artifacts"])  # type: ignore[index]
                state.versions.append(entry)
                run_record["version"] = version
                line = (f"learn round {number}: deployed {names} ({result.reason}): {summary(result)}" if single
                        else f"learn round {number}: deployed {names}: {'; '.join(parts)}")
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
