"""Session fixtures: one real build of a small corpus and one real embedded Triton over it.

The reranker here is all-MiniLM-L6-v2 with a freshly initialised (seeded) classification head:
its scores are meaningless, but it exercises the whole export → serve → rerank path.

Tests that need the build, Triton, Redis or a process of their own are marked `slow` here, so
`pytest -m "not slow"` is a fast tier of pure-Python checks; CI runs everything.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.config import BuildSettings, GatewaySettings

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "corpus.jsonl"
# tests that check what a search answers, not when, give it all the time a loaded 2-core CI
# machine may need (the deadline tests set their own)
SLOW_CI_DEADLINE_MS = 120_000

# fixtures that build artifacts, start Triton or start redis-server (tests/personalization/conftest.py)
SLOW_FIXTURES = frozenset(
    {"untrained_reranker", "artifacts", "legacy_artifacts", "triton", "client", "redis_server", "redis_url",
     "late_reranker", "late_artifacts", "late_triton"}
)
# names whose use in a test (or a helper of its module it calls) starts a process
PROCESS_NAMES = frozenset({"subprocess", "multiprocessing", "serve_process", "start_redis", "EmbeddedTriton"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: builds artifacts, trains a model, or starts Triton, Redis or a process (skip: -m 'not slow')"
    )


def _names(code: types.CodeType, namespace: dict, seen: set[types.CodeType]) -> set[str]:
    """Global and attribute names a function uses, through its nested code and the helpers of
    its own module that it calls."""
    if code in seen:
        return set()
    seen.add(code)
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const, namespace, seen)
    for name in code.co_names:
        helper = namespace.get(name)
        if isinstance(helper, types.FunctionType) and helper.__module__ == namespace.get("__name__"):
            names |= _names(helper.__code__, namespace, seen)
    return names


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        starts_process = function is not None and bool(
            PROCESS_NAMES & _names(function.__code__, vars(item.module), set())  # type: ignore[attr-defined]
        )
        if starts_process or SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def untrained_reranker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ranking_build.models import default_encoder_path

    out = tmp_path_factory.mktemp("reranker")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(default_encoder_path()), num_labels=1)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(default_encoder_path())).save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory, untrained_reranker: Path) -> ArtifactPaths:
    from ranking_build.pipeline import run_build

    root = tmp_path_factory.mktemp("artifacts") / "small"
    run_build(BuildSettings(corpus=CORPUS, artifacts=root, reranker=untrained_reranker, max_length=128))
    return ArtifactPaths(root)


@pytest.fixture(scope="session")
def legacy_artifacts(artifacts: ArtifactPaths, tmp_path_factory: pytest.TempPathFactory) -> ArtifactPaths:
    """The session build as an older build wrote it: no BM25 index, no `bm25` manifest field.
    Models are left out (the session's Triton serves them); the index and tokenizers are copied."""
    root = tmp_path_factory.mktemp("legacy") / "small"
    shutil.copytree(artifacts.root, root, ignore=shutil.ignore_patterns("model_repository", "onnx", "bm25"))
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["bm25"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    return ArtifactPaths(root)


@pytest.fixture(scope="session")
def late_reranker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A late-interaction reranker as `train-reranker --kind late-interaction` saves one, before
    any step: the query encoder is all-MiniLM-L6-v2 and both projections its corpus PCA."""
    import torch

    from ranking_build.models import default_encoder_path
    from ranking_gateway.core.artifacts import sha256_of
    from ranking_gateway.core.corpus import read_corpus
    from ranking_gateway.core.reranker_dir import BUILTIN_DOCUMENT_ENCODER
    from ranking_gateway.training.late_interaction import DocumentStates, LateInteractionTrainer, LateTrainConfig

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("late-reranker")
    encoder = default_encoder_path()
    states = DocumentStates.compute(encoder, [d.full_text for d in read_corpus(CORPUS)], 96)
    trainer = LateInteractionTrainer(encoder, states, LateTrainConfig(dim=32, query_max_length=24, document_max_length=96))
    trainer.save(out, BUILTIN_DOCUMENT_ENCODER, sha256_of(encoder / "model.safetensors"))
    return out


@pytest.fixture(scope="session")
def late_artifacts(tmp_path_factory: pytest.TempPathFactory, late_reranker: Path) -> ArtifactPaths:
    from ranking_build.pipeline import run_build

    root = tmp_path_factory.mktemp("late-artifacts") / "small"
    # fp32: the served scores can then be checked for equality with the PyTorch reranker's
    # (int8's effect on relevance is measured by the benches, not asserted here)
    run_build(BuildSettings(corpus=CORPUS, artifacts=root, reranker=late_reranker, cpu_runtime="onnx_fp32"))
    return ArtifactPaths(root)


@pytest.fixture(scope="session")
def late_triton(late_artifacts: ArtifactPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from ranking_gateway.serving.triton_server import EmbeddedTriton

    log_path = tmp_path_factory.mktemp("late-triton-log") / "tritonserver.log"
    with EmbeddedTriton(late_artifacts.model_repository, log_path=log_path) as server:
        yield server


@pytest.fixture(scope="session")
def triton(artifacts: ArtifactPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from ranking_gateway.serving.triton_server import EmbeddedTriton

    log_path = tmp_path_factory.mktemp("triton-log") / "tritonserver.log"
    with EmbeddedTriton(artifacts.model_repository, log_path=log_path) as server:
        yield server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def gateway_client(settings: GatewaySettings, triton_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The ASGI app with its lifespan entered, driven in-process through httpx."""
    from ranking_gateway.serving.app import create_app

    app = create_app(settings, triton_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def client(artifacts: ArtifactPaths, triton) -> AsyncIterator[httpx.AsyncClient]:
    # generous timeout: CI machines are small and shared, a slow answer is not what these tests check
    settings = GatewaySettings(artifacts=artifacts.root, triton_timeout_s=120, deadline_ms=SLOW_CI_DEADLINE_MS)
    async with gateway_client(settings, triton.grpc_url) as c:
        yield c


@contextlib.contextmanager
def serve_process(
    artifacts: ArtifactPaths, log_path: Path, *extra: str, triton_url: str | None = None, ready: str = "/healthz"
) -> Iterator[httpx.Client]:
    """A real `ranking-gateway serve` subprocess on a free port, as a user starts it; the client
    carries `.process`. Embedded Triton unless `triton_url` is given."""
    from ranking_gateway.serving.triton_server import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "ranking_gateway.cli", "serve", "--artifacts", str(artifacts.root), "--port", str(port)]
    cmd += ["--triton-url", triton_url] if triton_url else []
    cmd += ["--deadline-ms", str(SLOW_CI_DEADLINE_MS)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen([*cmd, *extra], stdout=log, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, f"gateway exited: {log_path.read_text()[-3000:]}"
            with contextlib.suppress(httpx.TransportError):
                if client.get(ready).status_code == 200:
                    break
            assert time.monotonic() < deadline, "gateway did not become ready"
            time.sleep(0.2)
        client.process = proc  # type: ignore[attr-defined]
        yield client
    finally:
        client.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
