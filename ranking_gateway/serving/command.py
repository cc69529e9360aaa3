"""The `serve` subcommand: flags → GatewaySettings → plan → embedded (or external) Triton, checked
against the build (`compatibility`) → the gateway under uvicorn.

Ctrl-C or SIGTERM stops uvicorn gracefully, then the embedded Triton; should the gateway die
harder than that, Triton gets SIGTERM from the kernel (PR_SET_PDEATHSIG), so nothing is orphaned.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import signal
from pathlib import Path

from ranking_gateway.core.config import (
    RETRIEVAL_MODES,
    AdmissionSettings,
    CacheSettings,
    GatewaySettings,
    PersonalizationSettings,
)
from ranking_gateway.core.errors import CliError
from ranking_gateway.serving.auth import ApiKeys, is_loopback
from ranking_gateway.serving.plan import resolve

log = logging.getLogger(__name__)

_GATEWAY = GatewaySettings(artifacts=Path("."))  # the defaults the flags show and fall back to
_CACHE = CacheSettings()
_PERSONAL = PersonalizationSettings()
_ADMISSION = AdmissionSettings()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="start Triton (embedded unless --triton-url) and the HTTP gateway")
    p.add_argument("--artifacts", type=Path, required=True, help="directory written by `ranking-gateway build`")
    p.add_argument("--host", default=_GATEWAY.host)
    p.add_argument("--port", type=int, default=_GATEWAY.port)
    p.add_argument("--triton-url", help="gRPC host:port of an external Triton (default: start the embedded one)")
    p.add_argument(
        "--triton-live-repository", type=Path, metavar="DIR",
        help="with --triton-url: the model repository that Triton was started on with --model-control-mode=explicit, "
        "at the same absolute path for both (same host, or a shared volume mounted there): the gateway lays its "
        "models out and loads them there, so `deploy` can swap them (default: that Triton's own models, no swap)",
    )
    p.add_argument("--triton-log", type=Path, help="where the embedded Triton writes its log")
    p.add_argument("--rerank-chunk-size", type=int, default=_GATEWAY.rerank_chunk_size, help="pairs per reranker request")
    p.add_argument("--rerank-depth", type=int, default=_GATEWAY.rerank_depth,
                   help=f"rerank at most this many candidates (default {_GATEWAY.rerank_depth})")
    p.add_argument(
        "--rerank-alpha", type=float,
        help="1: rank by the reranker logit; <1: blend alpha*z(logit) + (1-alpha)*z(retrieval score) per query "
        "(default: the alpha train-reranker chose on held-out queries, recorded by build; else 1)",
    )
    p.add_argument(
        "--rerank-max-length", type=int,
        help="reranker tokens per (query, document) pair, at most the build's --max-length (default: the build's)",
    )
    p.add_argument(
        "--retrieval", choices=RETRIEVAL_MODES,
        help="first stage: dense (FAISS), bm25, or hybrid (both, reciprocal rank fusion); "
        "default hybrid where the build has a BM25 index, else dense",
    )
    p.add_argument("--deadline-ms", type=int, default=_GATEWAY.deadline_ms,
                   help="every search answers within this unless it asks for its own timeout_ms: a rerank that "
                   "cannot finish in time is cancelled and the answer comes in retrieval order, flagged degraded "
                   f"(default {_GATEWAY.deadline_ms}; a 384-token cross-encoder on a small CPU needs more)")
    p.add_argument("--max-inflight", type=int, default=_ADMISSION.max_inflight,
                   help="searches ranked at once (cache misses); the rest wait in the queue")
    p.add_argument("--max-queue", type=int, default=_ADMISSION.max_queue,
                   help="searches waiting to be ranked; past it a search gets 429 with Retry-After at once")
    p.add_argument("--api-key-file", type=Path,
                   help="one API key per line: POST /v1/events and GET/DELETE /v1/users/... then need "
                   "'Authorization: Bearer <key>' (401 without, 403 wrong)")
    p.add_argument("--protect-search", action="store_true", help="with --api-key-file: search and rerank need a key too")
    p.add_argument("--cache-size", type=int, default=_CACHE.max_entries, help="hot-query cache entries")
    p.add_argument("--cache-ttl", type=float, default=_CACHE.ttl_s, help="hot-query cache TTL, seconds")
    p.add_argument("--redis-url", help="redis://host:port/db: profiles, event stream and query cache shared by gateways")
    p.add_argument("--event-log", type=Path, help="JSON-lines event log directory (default: <artifacts>-events/)")
    p.add_argument("--event-log-max-mb", type=float, default=_PERSONAL.event_log_max_bytes / (1 << 20),
                   help="rotate event-log segments at this size")
    p.add_argument("--event-stream-max-len", type=int,
                   help="with --redis-url: keep only the newest N entries of the event stream (default: all)")
    p.add_argument(
        "--no-event-fsync", action="store_true",
        help="acknowledge events after write() without fdatasync (survives a gateway crash, not a machine crash)",
    )
    p.add_argument("--profile-half-life", type=float, default=_PERSONAL.half_life_s, help="profile decay half-life, s")
    p.add_argument("--personalizer-weights", type=Path, help="weights JSON written by `train-personalizer`")
    p.add_argument("--personalizer-protect-head-z", type=_head_z, default=_PERSONAL.protect_head_z, metavar="Z|none",
                   help="candidates whose reranker z-score is at least Z keep their place on top of a personalised "
                   f"ranking (default {_PERSONAL.protect_head_z}; none: the profile may move every candidate)")
    p.set_defaults(handler=run)


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    """The flags as typed settings; unset optional flags stay None for `plan.resolve` to decide."""
    return GatewaySettings(
        artifacts=args.artifacts,
        host=args.host,
        port=args.port,
        triton_url=args.triton_url,
        rerank_chunk_size=args.rerank_chunk_size,
        rerank_depth=args.rerank_depth,
        rerank_alpha=args.rerank_alpha,
        rerank_max_length=args.rerank_max_length,
        retrieval=args.retrieval,
        cache=CacheSettings(max_entries=args.cache_size, ttl_s=args.cache_ttl),
        admission=_admission(args),
        deadline_ms=_positive(args.deadline_ms, "--deadline-ms"),
        api_key_file=args.api_key_file,
        protect_search=args.protect_search,
        redis_url=args.redis_url,
        personalization=PersonalizationSettings(
            event_log=args.event_log,
            event_log_max_bytes=int(args.event_log_max_mb * (1 << 20)),
            event_log_fsync=not args.no_event_fsync,
            event_stream_max_len=(
                None if args.event_stream_max_len is None else _positive(args.event_stream_max_len, "--event-stream-max-len")
            ),
            half_life_s=args.profile_half_life,
            weights=args.personalizer_weights,
            protect_head_z=args.personalizer_protect_head_z,
        ),
    )


def _head_z(text: str) -> float | None:
    """`--personalizer-protect-head-z`: a finite number, or `none`."""
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'none'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not finite")
    return value


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise CliError(f"{flag} must be at least 1, got {value}")
    return value


def _admission(args: argparse.Namespace) -> AdmissionSettings:
    try:
        return AdmissionSettings(max_inflight=args.max_inflight, max_queue=args.max_queue)
    except ValueError as exc:
        raise CliError(f"--max-inflight/--max-queue: {exc}") from None


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """uvicorn shuts down gracefully on SIGTERM, then re-raises it; we turn that into a clean
    exit so the embedded Triton is stopped by the `with` block rather than by the kernel."""
    raise SystemExit(0)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ranking_gateway.serving.app import create_app
    from ranking_gateway.serving.compatibility import check_triton
    from ranking_gateway.serving.deploy import LiveTriton, start_external
    from ranking_gateway.serving.live_repository import LiveRepository
    from ranking_gateway.serving.metrics import GatewayMetrics
    from ranking_gateway.serving.triton_server import EmbeddedTriton, TritonInstallation
    from ranking_gateway.serving.triton_supervisor import TritonSupervisor

    settings = settings_from_args(args)
    if settings.triton_url is None:
        TritonInstallation.from_wheel()  # without the `embedded` extra: a one-line hint, before anything else
    if args.triton_live_repository is not None and settings.triton_url is None:
        raise CliError("--triton-live-repository needs --triton-url (the embedded Triton has a live repository of its own)")
    if args.protect_search and not args.api_key_file:
        raise CliError("--protect-search needs --api-key-file")
    if settings.api_key_file:
        ApiKeys.read(settings.api_key_file)  # a bad key file stops here, before Triton starts
    elif not is_loopback(settings.host):
        log.warning("serving on %s without --api-key-file: anyone who reaches the port can write events "
                    "and read or erase users", settings.host)
    plan = resolve(settings)  # every flag checked against the build before Triton starts
    if settings.redis_url is None:
        from ranking_gateway.personalization.jsonl_log import EventLogLocked, ensure_not_owned

        try:
            ensure_not_owned(plan.event_log)
        except EventLogLocked as exc:
            raise CliError(str(exc)) from None
    log.info("serving plan: %s", plan.describe())
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    metrics = GatewayMetrics()
    with contextlib.ExitStack() as stack:
        triton = None
        live = None
        if settings.triton_url is None:
            # explicit model control over a live repository of version-suffixed names, so that
            # `deploy` can load another build's models beside these (serving.live_repository)
            repository = LiveRepository()
            stack.callback(repository.cleanup)
            names = repository.add(plan.paths, plan.version_key, plan.triton_models)
            triton = stack.enter_context(
                EmbeddedTriton(repository.path, log_path=args.triton_log, load_models=list(names.values()))
            )
            live = LiveTriton(repository, names, triton)
        elif args.triton_live_repository is not None:
            # the same, on an external Triton in explicit mode over a directory both see (deploy.start_external)
            live = start_external(args.triton_live_repository, str(settings.triton_url), plan)
        triton_url = triton.grpc_url if triton is not None else str(settings.triton_url)
        # a Triton that cannot serve this build (another release for its engines, a model it could
        # not load) is a one-line error quoting its reason, before the gateway starts
        check_triton(triton_url, plan.manifest, plan.triton_models, names=live.names if live else None)
        if triton is not None:
            stack.enter_context(TritonSupervisor(triton, metrics))  # restarted should it die
        app = create_app(settings, triton_url, plan, metrics, live)
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info"))
        log.info("gateway on http://%s:%d (Triton %s)", settings.host, settings.port, triton_url)
        server.run()
    return 0
