"""The `deploy` subcommand: ask a running gateway to swap to new artifacts (or personaliser
weights), or back, through `POST /v1/admin/deploy`, and print its report.

A thin client on purpose: the swap runs inside the gateway (it owns Triton's live repository and
the served state), so the command works the same from a shell, a CI job or a cron entry. Paths are
made absolute here: the gateway resolves them on its machine, not in our working directory. A
refusal is printed with the gateway's reason and exits 1 (the old version still serves).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ranking_gateway.core.errors import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("deploy", help="swap a running gateway to new artifacts without a restart (live swap)")
    what = p.add_mutually_exclusive_group(required=False)
    what.add_argument("--artifacts", type=Path, help="directory written by `ranking-gateway build`")
    what.add_argument("--rollback", action="store_true", help="swap back to the version served before the last swap")
    p.add_argument("--personalizer-weights", type=Path, help="weights JSON of `train-personalizer` (alone: no Triton change)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway (default http://127.0.0.1:8000)")
    p.add_argument("--warm", type=int, default=0, metavar="N",
                   help="before the switch, warm the new version's cache with the N most frequent recent searches")
    p.add_argument("--drain-timeout", type=float, help="seconds the old version's requests may run before its models go")
    p.add_argument("--api-key-file", type=Path, help="the first key in this file is sent (needed with serve --api-key-file)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the gateway's answer")
    p.set_defaults(handler=run)


def request_body(args: argparse.Namespace) -> dict:
    if args.rollback and args.personalizer_weights:
        raise CliError("--rollback takes no --personalizer-weights (it restores the previous ones)")
    if not (args.rollback or args.artifacts or args.personalizer_weights):
        raise CliError("give --artifacts DIR, --personalizer-weights FILE or --rollback")
    if args.warm < 0:
        raise CliError("--warm must be at least 0")
    body: dict = {"rollback": bool(args.rollback), "warm": args.warm}
    if args.artifacts:
        body["artifacts"] = str(args.artifacts.resolve())
    if args.personalizer_weights:
        body["personalizer_weights"] = str(args.personalizer_weights.resolve())
    if args.drain_timeout is not None:
        body["drain_timeout_s"] = args.drain_timeout
    return body


def _key(path: Path | None) -> str | None:
    if path is None:
        return os.environ.get("RANKING_GATEWAY_API_KEY")
    from ranking_gateway.serving.auth import ApiKeys

    ApiKeys.read(path)  # one-line CliError when unreadable or empty
    return next(line.strip() for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#"))


def auth_headers(path: Path | None) -> dict[str, str]:
    """The bearer header of `_key`'s key (none without one): what the admin routes check."""
    key = _key(path)
    return {"Authorization": f"Bearer {key}"} if key else {}


def run(args: argparse.Namespace) -> int:
    import httpx

    body = request_body(args)
    headers = auth_headers(args.api_key_file)
    url = args.url.rstrip("/") + "/v1/admin/deploy"
    try:
        answer = httpx.post(url, json=body, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as exc:
        raise CliError(f"could not reach the gateway at {args.url}: {exc}") from None
    try:
        report = answer.json()
    except ValueError:
        raise CliError(f"the gateway answered {answer.status_code} without JSON: {answer.text[:300]}") from None
    if answer.status_code != 200:
        error = report.get("error", {}) if isinstance(report, dict) else {}
        print(f"deploy refused ({answer.status_code} {error.get('code', '?')}): {error.get('message', report)}",
              file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    to = report.get("to", {})
    print(f"serving {to.get('artifacts')} (version {to.get('version')}) {report.get('switched_after_ms')} ms "
          "after the request", file=sys.stderr)
    return 0
