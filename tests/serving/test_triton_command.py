"""`ranking-gateway triton`: the embedded Triton in the foreground on fixed ports, as the CPU
Triton container runs it. SIGTERM stops it cleanly (exit 0, no server or stub left); a Triton
that dies takes the command with it, with its status (for the container's restart policy)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from ranking_gateway.cli import build_parser
from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.serving.triton_command import exit_code
from ranking_gateway.serving.triton_server import EmbeddedTriton, free_port
from tests.serving.test_command import alive, children_of


def test_the_flags_default_to_a_containers_fixed_ports_on_every_interface() -> None:
    args = build_parser().parse_args(["triton", "--model-repository", "/models"])
    assert (args.address, args.http_port, args.grpc_port, args.metrics_port) == ("0.0.0.0", 8000, 8001, 8002)
    assert args.log is None  # Triton's log goes to the container's


def test_every_interface_is_reached_through_loopback() -> None:
    triton = EmbeddedTriton(Path("/models"), http_port=8000, grpc_port=8001, address="0.0.0.0")
    assert (triton.grpc_url, triton.http_url) == ("127.0.0.1:8001", "http://127.0.0.1:8000")
    assert EmbeddedTriton(Path("/m"), grpc_port=1, address="10.0.0.5").grpc_url == "10.0.0.5:1"


def test_the_exit_code_is_tritons_status() -> None:
    assert (exit_code(0), exit_code(1), exit_code(-signal.SIGKILL)) == (0, 1, 137)


@contextlib.contextmanager
def triton_command(artifacts: ArtifactPaths, log_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """The command as a container runs it (every interface), on free ports; until it is ready."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "ranking_gateway.cli", "triton", "--model-repository", str(artifacts.model_repository),
           "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, f"triton exited: {log_path.read_text()[-3000:]}"
            with contextlib.suppress(httpx.TransportError):
                # ready, and the command past its start-up (a death before that is a failed start)
                if httpx.get(f"{url}/v2/health/ready").status_code == 200 and "Triton serving" in log_path.read_text():
                    break
            assert time.monotonic() < deadline, "Triton did not become ready"
            time.sleep(0.5)
        assert httpx.get(f"http://127.0.0.1:{metrics}/metrics").status_code == 200
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _gone(pids: list[int]) -> bool:
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not any(alive(p) for p in pids)


def test_sigterm_stops_triton_and_exits_0(artifacts: ArtifactPaths, tmp_path: Path) -> None:
    with triton_command(artifacts, tmp_path / "triton.log") as (proc, url):
        servers = children_of(proc.pid)
        assert servers, "the command should run tritonserver as its child"
        stubs = [c for pid in servers for c in children_of(pid)]
        assert stubs, "tritonserver should run a python-backend stub per model"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert _gone(servers + stubs), "tritonserver or its stubs outlived the command"
    assert "SIGTERM: stopping Triton" in (tmp_path / "triton.log").read_text()


def test_when_triton_dies_the_command_exits_with_its_status(artifacts: ArtifactPaths, tmp_path: Path) -> None:
    with triton_command(artifacts, tmp_path / "triton.log") as (proc, url):
        (server,) = children_of(proc.pid)
        os.kill(server, signal.SIGKILL)
        assert proc.wait(timeout=60) == 128 + signal.SIGKILL
    assert _gone([server])
