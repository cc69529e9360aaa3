"""`ranking-gateway serve` as a child process of a benchmark: started on a free port, waited
for until `/readyz` answers 200, stopped at the end. One helper so every bench starts the
gateway the same way a user does (embedded Triton, the CLI's own flags)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from ranking_gateway.serving.triton_server import free_port


def start_gateway(artifacts: Path, flags: Sequence[str], log_path: Path, ready_s: float = 300) -> tuple[subprocess.Popen, str]:
    """(process, base URL) of `serve --artifacts ARTIFACTS FLAGS…`, ready; SystemExit naming the log otherwise."""
    port = free_port()
    cmd = [sys.executable, "-m", "ranking_gateway.cli", "serve", "--artifacts", str(artifacts), "--port", str(port), *flags]
    proc = subprocess.Popen(cmd, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_gateway(proc)
    raise SystemExit(f"serve did not become ready in {ready_s:.0f} s; see {log_path}")


def stop_gateway(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
