"""`ranking-gateway serve` as a user runs it: embedded Triton, real HTTP, SIGTERM, no orphans."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ranking_gateway.artifacts import ArtifactPaths
from ranking_gateway.triton_server import free_port


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_serve_embedded_then_sigterm_leaves_no_orphans(artifacts: ArtifactPaths, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    cmd = [sys.executable, "-m", "ranking_gateway.cli", "serve", "--artifacts", str(artifacts.root), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            deadline = time.monotonic() + 240
            while True:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the stack did not become ready"
                time.sleep(0.5)
            triton_pids = children_of(proc.pid)
            assert triton_pids, "serve should have started tritonserver as its child"
            body = client.post("/v1/search", json={"query": "how are diamonds formed", "k": 3}).json()
            assert body["reranked"] and len(body["results"]) == 3
            dense = client.post("/v1/search", json={"query": "how are diamonds formed", "k": 3, "rerank": False})
            assert dense.json()["results"][0]["id"] == "geology-4"
        stubs = [c for pid in triton_pids for c in children_of(pid)]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while any(alive(p) for p in triton_pids + stubs) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in triton_pids + stubs if alive(p)], "tritonserver or its stubs outlived the gateway"
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
