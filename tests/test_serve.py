"""`ranking-gateway serve` as a user runs it: embedded Triton, real HTTP, SIGTERM, no orphans."""

import os
import signal
import time
from pathlib import Path

from ranking_gateway.artifacts import ArtifactPaths
from tests.conftest import serve_process


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
    with serve_process(artifacts, tmp_path / "serve.log", ready="/readyz") as client:
        proc = client.process  # type: ignore[attr-defined]
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
