"""The docker compose stack, for real: images built, `up`, searches and events through the
published port, a Redis restart, a second gateway replica, `down -v`.

Runs what the README's "docker compose" section says (scripts/compose_stack.sh, which starts a
Docker engine and builds the base images from Debian packages where there is no registry). Skips,
saying why, where no engine can run (not root, or no Docker packages to install).
Set COMPOSE_TEST_REPORT=path.json to keep the replica measurement (docs/deploy.md quotes one).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ranking_gateway.serving.triton_server import free_port

pytestmark = pytest.mark.slow  # builds images and starts containers: not in the fast tier

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compose_stack.sh"
# a project of its own per run (containers, network, volumes), and one run at a time on a machine
PROJECT = f"ranking-gateway-test-{os.getpid()}"
LOCK = Path("/tmp/ranking-gateway-compose-test.lock")
UP_TIMEOUT_S = 40 * 60  # a first run builds every image; later runs reuse the layers
READY_TIMEOUT_S = 10 * 60
QUERY = "sort the items of a list in place"


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    gateway: str
    replica: str

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        command = ["docker", "compose"] if _has_compose_plugin() else ["docker-compose"]
        return subprocess.run([*command, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=True)


def _has_compose_plugin() -> bool:
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


def _why_no_engine() -> str | None:
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        return "starting a Docker engine needs root"
    if shutil.which("dockerd") is None and shutil.which("apt-get") is None:
        return "no Docker engine and no apt to install one"
    return None


def _wait_ready(url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/readyz", timeout=5)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(2)
    raise AssertionError(f"{url} not ready after {timeout_s} s: {last}")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    reason = _why_no_engine()
    if reason:
        pytest.skip(reason)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _stack()


def _stack() -> Iterator[Stack]:
    engine = subprocess.run(["bash", str(SCRIPT), "engine"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if engine.returncode == 3:
        pytest.skip(f"no Docker engine could start here: {engine.stderr.strip()[-300:]}")
    assert engine.returncode == 0, engine.stderr[-3000:]
    gateway_port, replica_port = free_port(), free_port()
    env = {**os.environ, "COMPOSE_PROJECT_NAME": PROJECT, "GATEWAY_PORT": str(gateway_port),
           "REPLICA_PORT": str(replica_port), "TRITON_GRPC_PORT": str(free_port()),
           "TRITON_METRICS_PORT": str(free_port())}
    env.pop("COMPOSE_PROFILES", None)  # the .env file's default (cpu) is part of what is tested
    started = time.monotonic()
    try:
        # the base images every later compose call here needs too (a restarted Redis, the replica)
        bases = subprocess.run(["bash", str(SCRIPT), "env"], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=900)
        assert bases.returncode == 0, bases.stderr[-3000:]
        env.update(line.split("=", 1) for line in bases.stdout.split())
        up = subprocess.run(["bash", str(SCRIPT), "up"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=UP_TIMEOUT_S)
        assert up.returncode == 0, f"compose_stack.sh up failed:\n{up.stdout[-2000:]}\n{up.stderr[-4000:]}"
        print(up.stderr[-1500:])
        stack = Stack(env, f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{replica_port}")
        _wait_ready(stack.gateway)
        print(f"compose stack ready {time.monotonic() - started:.0f} s after `up` began")
        yield stack
    finally:
        if os.environ.get("COMPOSE_TEST_KEEP") != "1":
            subprocess.run(["bash", str(SCRIPT), "down"], cwd=ROOT, env=env, capture_output=True, timeout=300)
        subprocess.run(["bash", str(SCRIPT), "engine-stop"], cwd=ROOT, capture_output=True, timeout=120)


def _search(url: str, user: str | None = None, query: str = QUERY) -> dict:
    r = httpx.post(f"{url}/v1/search", json={"query": query, "k": 10, "candidates": 30, "user_id": user},
                   timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _click(url: str, user: str, doc_id: str, position: int) -> None:
    r = httpx.post(f"{url}/v1/events", json={"user_id": user, "doc_id": doc_id, "type": "click",
                                             "position": position}, timeout=30)
    assert (r.status_code, r.json()) == (202, {"accepted": True}), r.text


def _ids(body: dict) -> list[str]:
    return [hit["id"] for hit in body["results"]]


def test_the_stack_searches_reranked_and_takes_events(stack: Stack) -> None:
    body = _search(stack.gateway)
    assert body["reranked"] and not body["degraded"], body
    assert len(body["results"]) == 10
    clicked = body["results"][-1]["id"]
    _click(stack.gateway, "ann", clicked, position=9)
    personal = _search(stack.gateway, "ann")
    assert personal["personalized"] and _ids(personal).index(clicked) < 9
    # the image runs Triton and the gateway apart: the gateway's metrics name the external server
    assert httpx.get(f"{stack.gateway}/metrics", timeout=10).status_code == 200


def test_a_profile_and_its_events_survive_redis_being_killed(stack: Stack) -> None:
    body = _search(stack.gateway)
    _click(stack.gateway, "bob", body["results"][-2]["id"], position=8)
    before = httpx.get(f"{stack.gateway}/v1/users/bob/profile", timeout=10).json()
    stack.compose("kill", "redis")  # SIGKILL: no clean shutdown writes the data for it
    stack.compose("up", "-d", "redis")
    deadline = time.monotonic() + 120
    while True:
        r = httpx.get(f"{stack.gateway}/v1/users/bob/profile", timeout=10)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert r.status_code == 200, r.text
    after = r.json()
    decaying = ("strength", "centroid_norm")  # fade with the half-life between the two reads
    assert {k: v for k, v in after.items() if k not in decaying} == {k: v for k, v in before.items() if k not in decaying}
    assert [after[k] for k in decaying] == pytest.approx([before[k] for k in decaying], rel=1e-3)


def test_a_click_on_one_replica_changes_the_next_search_on_the_other(stack: Stack) -> None:
    stack.compose("--profile", "cpu", "--profile", "replica", "up", "-d", "gateway-replica", timeout=600)
    _wait_ready(stack.replica)
    base = _search(stack.replica, "cat")
    assert not base["personalized"]
    clicked = base["results"][-1]["id"]
    _click(stack.gateway, "cat", clicked, position=9)
    after = _search(stack.replica, "cat")
    assert after["personalized"] and _ids(after).index(clicked) < _ids(base).index(clicked)


def _load(urls: list[str], requests: int, clients: int, run: int) -> dict:
    """`requests` searches of queries no other run sends (so every one misses the shared cache),
    spread over `urls` round robin by `clients` threads: q/s and latency percentiles."""
    words = ["file", "socket", "thread", "parse", "date", "string", "path", "error", "queue", "json", "number"]

    def one(i: int) -> float:
        query = f"{words[i % len(words)]} {words[(i // len(words)) % len(words)]} handling {run}-{i}"
        start = time.perf_counter()
        r = httpx.post(f"{urls[i % len(urls)]}/v1/search", json={"query": query, "k": 10}, timeout=120)
        assert r.status_code == 200 and not r.json()["cached"], r.text
        return (time.perf_counter() - start) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(pool.map(one, range(requests)))
    seconds = time.perf_counter() - started
    return {"replicas": len(urls), "requests": requests, "clients": clients, "qps": round(requests / seconds, 2),
            "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1)}


def test_two_replicas_against_one_under_the_same_load(stack: Stack) -> None:
    """Measured, not asserted on (the machines are shared): every search answers 200 either way."""
    _wait_ready(stack.replica)
    runs = []
    for round_ in range(2):  # alternated, so drift in the machine's load hits both alike
        runs.append({"round": round_, **_load([stack.gateway], requests=60, clients=4, run=len(runs))})
        runs.append({"round": round_, **_load([stack.gateway, stack.replica], requests=60, clients=4, run=len(runs))})
    one = statistics.median(r["qps"] for r in runs if r["replicas"] == 1)
    two = statistics.median(r["qps"] for r in runs if r["replicas"] == 2)
    report = {"command": "COMPOSE_TEST_REPORT=PATH pytest tests/deploy/test_compose_stack.py", "cpus": os.cpu_count(),
              "runs": runs, "median_qps_one": one, "median_qps_two": two, "two_over_one": round(two / one, 2)}
    print(json.dumps(report, indent=2))
    if os.environ.get("COMPOSE_TEST_REPORT"):
        Path(os.environ["COMPOSE_TEST_REPORT"]).write_text(json.dumps(report, indent=2) + "\n")
