"""The `serve` subcommand: embedded (or external) Triton + the gateway under uvicorn.

Ctrl-C or SIGTERM stops uvicorn gracefully, then the embedded Triton; should the gateway die
harder than that, Triton gets SIGTERM from the kernel (PR_SET_PDEATHSIG), so nothing is orphaned.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
from pathlib import Path

from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.config import RETRIEVAL_MODES, GatewaySettings
from ranking_gateway.core.errors import CliError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="start Triton (embedded unless --triton-url) and the HTTP gateway")
    p.add_argument("--artifacts", type=Path, required=True, help="directory written by `ranking-gateway build`")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--triton-url", help="gRPC host:port of an external Triton (default: start the embedded one)")
    p.add_argument("--triton-log", type=Path, help="where the embedded Triton writes its log")
    p.add_argument("--rerank-chunk-size", type=int, default=16, help="pairs per reranker request")
    p.add_argument("--rerank-depth", type=int, default=GatewaySettings.rerank_depth,
                   help=f"rerank at most this many candidates (default {GatewaySettings.rerank_depth})")
    p.add_argument(
        "--rerank-alpha", type=float, default=None,
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
    p.add_argument("--cache-size", type=int, default=10_000, help="hot-query cache entries")
    p.add_argument("--cache-ttl", type=float, default=300.0, help="hot-query cache TTL, seconds")
    p.add_argument("--redis-url", help="redis://host:port/db: profiles, event stream and query cache shared by gateways")
    p.add_argument("--event-log", type=Path, help="JSON-lines event log directory (default: <artifacts>-events/)")
    p.add_argument("--event-log-max-mb", type=float, default=64.0, help="rotate event-log segments at this size")
    p.add_argument(
        "--no-event-fsync", action="store_true",
        help="acknowledge events after write() without fdatasync (survives a gateway crash, not a machine crash)",
    )
    p.add_argument("--profile-half-life", type=float, default=3 * 24 * 3600.0, help="profile decay half-life, s")
    p.add_argument("--personalizer-weights", type=Path, help="weights JSON written by `train-personalizer`")
    p.set_defaults(handler=run)


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    from ranking_gateway.core.config import CacheSettings, PersonalizationSettings

    return GatewaySettings(
        artifacts=args.artifacts,
        host=args.host,
        port=args.port,
        triton_url=args.triton_url,
        rerank_chunk_size=args.rerank_chunk_size,
        rerank_depth=args.rerank_depth,
        rerank_alpha=1.0 if args.rerank_alpha is None else args.rerank_alpha,
        rerank_max_length=args.rerank_max_length,
        retrieval=args.retrieval,
        cache=CacheSettings(max_entries=args.cache_size, ttl_s=args.cache_ttl),
        redis_url=args.redis_url,
        personalization=PersonalizationSettings(
            event_log=args.event_log,
            event_log_max_bytes=int(args.event_log_max_mb * (1 << 20)),
            event_log_fsync=not args.no_event_fsync,
            half_life_s=args.profile_half_life,
            weights=args.personalizer_weights,
        ),
    )


def _check_personalization(settings: GatewaySettings) -> None:
    ps = settings.personalization
    if not ps.half_life_s > 0:
        raise CliError("--profile-half-life must be positive")
    if not ps.event_log_max_bytes > 0:
        raise CliError("--event-log-max-mb must be positive")
    if ps.weights is not None:
        from ranking_gateway.personalization.scorer import PersonalScorer

        try:
            PersonalScorer.load(ps.weights)
        except (OSError, ValueError) as exc:
            raise CliError(f"--personalizer-weights {ps.weights}: {exc}") from None


def check_artifacts(settings: GatewaySettings) -> Manifest:
    """What the flags ask of the build, checked before Triton starts: a one-line CliError each."""
    from ranking_gateway.serving.index import resolve_retrieval

    paths = ArtifactPaths(settings.artifacts)
    if not paths.manifest.is_file():
        raise CliError(f"{settings.artifacts} has no manifest.json: run `ranking-gateway build` first")
    manifest = Manifest.read(paths.root)
    try:
        resolve_retrieval(settings.retrieval, manifest.bm25 is not None)
    except ValueError as exc:
        raise CliError(f"--retrieval: {exc}") from None
    n = settings.rerank_max_length
    if n is not None:
        if manifest.reranker is None:
            raise CliError("--rerank-max-length: these artifacts were built without a reranker")
        built = manifest.reranker.max_length
        if not 16 <= n <= built:
            raise CliError(
                f"--rerank-max-length must be between 16 and the build's reranker max length {built}, got {n} "
                "(the compiled model covers no longer pairs: rebuild with a larger --max-length)"
            )
    return manifest


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """uvicorn shuts down gracefully on SIGTERM, then re-raises it; we turn that into a clean
    exit so the embedded Triton is stopped by the `with` block rather than by the kernel."""
    raise SystemExit(0)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ranking_gateway.serving.app import create_app
    from ranking_gateway.serving.triton_server import EmbeddedTriton

    settings = settings_from_args(args)
    _check_personalization(settings)
    if not 0.0 <= settings.rerank_alpha <= 1.0:
        raise CliError("--rerank-alpha must be between 0 and 1")
    manifest = check_artifacts(settings)
    if args.rerank_alpha is None and manifest.reranker is not None and manifest.reranker.recommended_alpha is not None:
        settings = dataclasses.replace(settings, rerank_alpha=manifest.reranker.recommended_alpha)
        log.info("--rerank-alpha %g (recommended by the reranker's training report)", settings.rerank_alpha)
    paths = ArtifactPaths(settings.artifacts)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with contextlib.ExitStack() as stack:
        triton_url = settings.triton_url
        if triton_url is None:
            triton = stack.enter_context(EmbeddedTriton(paths.model_repository, log_path=args.triton_log))
            triton_url = triton.grpc_url
        app = create_app(settings, triton_url)
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info"))
        log.info("gateway on http://%s:%d (Triton %s)", settings.host, settings.port, triton_url)
        server.run()
    return 0
