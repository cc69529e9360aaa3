"""The `triton` subcommand: the embedded Triton alone, in the foreground, on fixed ports on every
interface: what the CPU Triton container runs, with the gateway elsewhere (`serve --triton-url`).

The server is `EmbeddedTriton`'s (its environment: the wheel's libraries, the python backend's
stub, passive OpenMP threads). SIGTERM or SIGINT stops it, its python-backend stubs with it, and
exits 0; should Triton exit by itself, so do we, with its status, for the container's restart
policy to restart it. A model that fails to load leaves Triton serving, unready: its reason is
logged here, and the gateway quotes it when it refuses to start (`serving.compatibility`).
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "triton", help="run the embedded Triton in the foreground on fixed ports (the CPU Triton container)"
    )
    p.add_argument("--model-repository", type=Path, required=True,
                   help="a build's Triton model repository (<artifacts>/model_repository)")
    p.add_argument("--address", default="0.0.0.0",
                   help="the interface the endpoints listen on (default 0.0.0.0: all, as in a container)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001, help="what `serve --triton-url` connects to")
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--log", type=Path, help="write Triton's log to this file (default: to this process's stdout)")
    p.add_argument("--startup-timeout", type=float, default=600.0,
                   help="seconds Triton may take to load the models before it is given up (default 600)")
    p.set_defaults(handler=run)


class _Stop(BaseException):
    """A stop signal, raised out of whatever the main thread waits on (the start, or the server)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def exit_code(status: int) -> int:
    """A process's exit code for Triton's exit status: a death by signal N as a shell reports it."""
    return 128 - status if status < 0 else status


def run(args: argparse.Namespace) -> int:
    from ranking_gateway.serving.triton_server import EmbeddedTriton, TritonInstallation

    TritonInstallation.from_wheel()  # without the `embedded` extra: a one-line hint
    triton = EmbeddedTriton(
        args.model_repository,
        log_path=args.log,
        console_log=args.log is None,
        startup_timeout_s=args.startup_timeout,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        address=args.address,
    )
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:  # once: a second signal must not interrupt the stop
            stopping = True
            raise _Stop(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        triton.start()  # stops the server itself when the start fails or is interrupted
        log.info("Triton serving %s: grpc %s:%d, http %s:%d, metrics %s:%d", args.model_repository,
                 args.address, args.grpc_port, args.address, args.http_port, args.address, args.metrics_port)
        status = triton.wait()
        stopping = True
        log.error("tritonserver exited with status %d", status)
        return exit_code(status)
    except _Stop as exc:
        log.info("%s: stopping Triton", signal.Signals(exc.signum).name)
        return 0
    finally:
        stopping = True
        triton.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
