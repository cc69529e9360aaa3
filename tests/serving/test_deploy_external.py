"""Live swap on an external Triton: a real `tritonserver` started here (not by `serve`), in
explicit model-control mode over a directory in tmp_path, and a real `serve --triton-url URL
--triton-live-repository DIR` process that lays its models out there, loads them, and swaps.

The candidate is the session build again in another directory (a farm of symlinks): the same
version, another path, so another suffix and every model loaded anew.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.config import GatewaySettings
from tests.conftest import serve_process
from tests.serving.test_deploy import _damaged_copy, _index

pytestmark = pytest.mark.slow

SEARCH = {"query": "volcano eruption", "k": 3, "candidates": 10}


@pytest.fixture(scope="module")
def external_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A Triton the gateway does not start: explicit mode, an empty repository for the gateway to fill."""
    from ranking_gateway.serving.triton_server import EmbeddedTriton

    repository = tmp_path_factory.mktemp("external-live")
    log_path = tmp_path_factory.mktemp("external-triton-log") / "tritonserver.log"
    with EmbeddedTriton(repository, log_path=log_path, load_models=[]) as server:
        yield server, repository


def _copy(source: ArtifactPaths, target: Path) -> ArtifactPaths:
    shutil.copytree(source.root, target, copy_function=os.symlink)
    return ArtifactPaths(target)


def _deploy(url: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ranking_gateway.cli", "deploy", "--url", url, *flags],
                          capture_output=True, text=True, timeout=600)


class _Searcher(threading.Thread):
    """Reranked searches in a loop until stopped; what did not answer 200 undegraded."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.stop = threading.Event()
        self.answered = 0
        self.failures: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=120) as client:
            while not self.stop.is_set():
                r = client.post("/v1/search", json={**SEARCH, "query": f"volcano eruption {self.answered}"})
                if r.status_code != 200 or r.json()["degraded"]:
                    self.failures.append(f"{r.status_code} {r.text[:300]}")
                self.answered += 1


def test_serve_on_an_external_triton_swaps_its_models_and_rolls_back(
    artifacts: ArtifactPaths, external_triton: tuple, tmp_path: Path
) -> None:
    triton, repository = external_triton
    candidate = _copy(artifacts, tmp_path / "candidate")
    flags = ("--triton-live-repository", str(repository), "--event-log", str(tmp_path / "events"))
    with serve_process(artifacts, tmp_path / "serve.log", *flags, triton_url=triton.grpc_url, ready="/readyz") as client:
        url = str(client.base_url)
        first = {p.name for p in repository.iterdir() if "__" in p.name}
        assert first and all(_index(triton.grpc_url).get(name) == "READY" for name in first)
        assert all((repository / name / "1").is_symlink() for name in first)  # absolute links into the build
        body = client.post("/v1/search", json=SEARCH).json()
        assert body["reranked"] and not body["degraded"] and len(body["results"]) == 3

        searcher = _Searcher(url)
        searcher.start()
        try:
            swap = _deploy(url, "--artifacts", str(candidate.root), "--warm", "2")
            body = client.post("/v1/search", json=SEARCH).json()
        finally:
            searcher.stop.set()
            searcher.join(timeout=180)
        assert swap.returncode == 0, swap.stdout + swap.stderr
        report = json.loads(swap.stdout)
        assert report["to"]["artifacts"] == str(candidate.root) and report["drained"]
        assert searcher.answered > 0 and searcher.failures == []
        assert body["reranked"] and not body["degraded"] and len(body["results"]) == 3
        second = {p.name for p in repository.iterdir() if "__" in p.name}
        states = _index(triton.grpc_url)
        assert second.isdisjoint(first) and all(states.get(name) == "READY" for name in second)
        assert not any(states.get(name) == "READY" for name in first)  # unloaded, entries removed
        assert sorted(report["models_unloaded"]) == sorted(first)

        damaged = _damaged_copy(artifacts, tmp_path / "damaged")
        refused = client.post("/v1/admin/deploy", json={"artifacts": str(damaged.root)})
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "model_load_failed" and "query_encoder__" in error["message"]
        assert {p.name for p in repository.iterdir() if "__" in p.name} == second

        back = _deploy(url, "--rollback")
        assert back.returncode == 0, back.stdout + back.stderr
        assert client.get("/v1/admin/deploy").json()["current"]["artifacts"] == str(artifacts.root)
        assert {p.name for p in repository.iterdir() if "__" in p.name} == first
        body = client.post("/v1/search", json=SEARCH).json()
        assert body["reranked"] and not body["degraded"] and len(body["results"]) == 3


@pytest.fixture(scope="module")
def plain_triton(artifacts: ArtifactPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A Triton *not* in explicit mode, over a live repository laid out beforehand: it serves
    the very names the gateway would load, but refuses load requests."""
    from ranking_gateway.core.artifacts import Manifest
    from ranking_gateway.serving.live_repository import LiveRepository
    from ranking_gateway.serving.plan import resolve
    from ranking_gateway.serving.triton_server import EmbeddedTriton

    repository = LiveRepository(tmp_path_factory.mktemp("plain-live"))
    models = resolve(GatewaySettings(artifacts=artifacts.root)).triton_models
    names = repository.add(artifacts, Manifest.read(artifacts.root).version_key, models)
    log_path = tmp_path_factory.mktemp("plain-triton-log") / "tritonserver.log"
    with EmbeddedTriton(repository.path, log_path=log_path) as server:  # model control "none": loads them all
        yield server, repository.path


def _serve_error(artifacts: ArtifactPaths, triton_url: str, directory: Path, tmp_path: Path) -> str:
    """`serve` that must stop at start-up: its one error line (and no traceback)."""
    result = subprocess.run(
        [sys.executable, "-m", "ranking_gateway.cli", "serve", "--artifacts", str(artifacts.root), "--port", "1",
         "--triton-url", triton_url, "--triton-live-repository", str(directory), "--event-log", str(tmp_path / "ev")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_a_triton_or_directory_that_cannot_take_a_live_repository_is_a_one_line_error(
    artifacts: ArtifactPaths, plain_triton: tuple, external_triton: tuple, tmp_path: Path
) -> None:
    triton, directory = plain_triton
    error = _serve_error(artifacts, triton.grpc_url, directory, tmp_path)
    assert "--model-control-mode=explicit" in error and "refuses to load" in error
    assert not any("__" in p.name for p in directory.iterdir())  # its entries removed again
    explicit, live = external_triton
    before = sorted(p.name for p in live.iterdir())
    error = _serve_error(_damaged_copy(artifacts, tmp_path / "damaged"), explicit.grpc_url, live, tmp_path)
    assert "could not load 'query_encoder__" in error and "Traceback" not in error  # Triton's reason, one line
    assert sorted(p.name for p in live.iterdir()) == before
    assert not any(state == "READY" and name not in before for name, state in _index(explicit.grpc_url).items())
    elsewhere = tmp_path / "elsewhere"  # not Triton's repository: a build it never saw is not there
    error = _serve_error(_copy(artifacts, tmp_path / "other"), triton.grpc_url, elsewhere, tmp_path)
    assert "does not see" in error and f"--model-repository={elsewhere}" in error
    (tmp_path / "a-file").write_text("")
    error = _serve_error(artifacts, triton.grpc_url, tmp_path / "a-file" / "live", tmp_path)
    assert "not a writable directory" in error


def test_the_live_repository_flag_needs_an_external_triton(artifacts: ArtifactPaths, capsys) -> None:
    from ranking_gateway.cli import main

    status = main(["serve", "--artifacts", str(artifacts.root), "--triton-live-repository", "/tmp/x"])
    assert status == 2 and "needs --triton-url" in capsys.readouterr().err
