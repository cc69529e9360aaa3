"""`ranking-gateway train-personalizer`: fit the personaliser's weights from the event log."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from ranking_gateway.core.errors import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-personalizer",
        help="fit the personaliser's logistic weights from logged impressions joined with clicks",
        description=__doc__,
    )
    parser.add_argument(
        "--events",
        required=True,
        help="an event-log file, a log directory (all segments), or a redis:// URL (the event stream)",
    )
    parser.add_argument("--out", required=True, type=Path, help="where to write the weights JSON")
    parser.add_argument("--holdout", type=float, default=0.2, help="fraction of requests held out (default 0.2)")
    parser.add_argument("--l2", type=float, default=1.0, help="L2 penalty on the non-bias weights (default 1.0)")
    parser.add_argument(
        "--position-bias",
        action="store_true",
        help="fit with a log(position) term that absorbs the examination bias of clicks, and keep "
        "only the feature weights (docs/personalization.md: what it did on simulated users)",
    )
    parser.add_argument("--redis-stream", default="rg:events", help="stream name with a redis:// --events")
    parser.set_defaults(handler=run)


def load_records(source: str, stream: str = "rg:events") -> list[dict[str, Any]]:
    """Every record of an event-log file or directory, or of a Redis event stream (also read by
    `train-reranker --source events`)."""
    if source.startswith(("redis://", "rediss://", "unix://")):
        import redis.asyncio

        from ranking_gateway.personalization.redis_stream_log import RedisStreamEventLog

        async def fetch() -> list[dict[str, Any]]:
            client = redis.asyncio.Redis.from_url(source)
            try:
                return [r async for r in RedisStreamEventLog(client, stream=stream).records()]
            finally:
                await client.aclose()

        try:
            return asyncio.run(fetch())
        except Exception as exc:  # noqa: BLE001 - connection failures become one line
            raise CliError(f"{source}: cannot read the event stream ({exc})") from None
    from ranking_gateway.personalization.jsonl_log import read_records

    path = Path(source)
    if not path.exists():
        raise CliError(f"{path}: no such event log file or directory")
    return list(read_records(path))


def run(args: argparse.Namespace) -> int:
    from ranking_gateway.personalization.scorer import FEATURE_NAMES, PersonalScorer
    from ranking_gateway.personalization.trainer import (
        build_dataset,
        evaluate,
        fit_logistic,
        fit_position_debiased,
        holdout_mask,
    )

    if not 0.0 <= args.holdout < 1.0:
        raise CliError("--holdout must be in [0, 1)")
    data = build_dataset(load_records(args.events, args.redis_stream))
    if len(data.labels) == 0:
        raise CliError(f"{args.events}: no impressions with features to learn from")
    if data.labels.sum() == 0:
        raise CliError(f"{args.events}: no clicks joined to any impression (events need the search's request_id)")
    test = holdout_mask(data.request_ids, args.holdout)
    train = ~test
    if data.labels[train].sum() == 0 or data.labels[train].sum() == train.sum():
        raise CliError("the training split has a single class; log more searches and clicks")
    position_weight = None
    if args.position_bias:
        weights, position_weight = fit_position_debiased(
            data.features[train], data.labels[train], data.positions[train], l2=args.l2
        )
    else:
        weights = fit_logistic(data.features[train], data.labels[train], l2=args.l2)
    default = PersonalScorer().weights
    fitted = PersonalScorer(weights=weights)
    report: dict[str, Any] = {
        "examples": {"train": int(train.sum()), "heldout": int(test.sum())},
        "positives": {"train": int(data.labels[train].sum()), "heldout": int(data.labels[test].sum())},
        "position_bias": {"log_position_weight": position_weight} if args.position_bias else None,
    }
    if test.any():
        report["heldout"] = {
            "fitted": evaluate(data.features[test], data.labels[test], weights),
            "default": evaluate(data.features[test], data.labels[test], default),
        }
        if position_weight is not None:  # the whole fitted model, position term included
            with_position = np.column_stack([data.features[test], np.log(data.positions[test])])
            report["heldout"]["fitted_with_position"] = evaluate(
                with_position, data.labels[test], np.concatenate([weights, [position_weight]])
            )
    out = {**fitted.to_json(), "training": report}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(" ".join(f"{n}={w:+.4f}" for n, w in zip(FEATURE_NAMES, np.asarray(weights))))
    print(json.dumps(report))
    print(f"wrote {args.out}")
    return 0
