"""The live swap's parts without Triton: the versioned repository, the recent-query window,
the deploy body, the admin rule, the CLI's request, and the refusals that need no model."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from starlette.applications import Starlette

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.errors import CliError
from ranking_gateway.serving.auth import ApiKeys
from ranking_gateway.serving.deploy import Deployer, DeployError, DeployRequest
from ranking_gateway.serving.deploy_command import request_body
from ranking_gateway.serving.live_repository import LiveRepository, rename_config, version_suffix
from ranking_gateway.serving.query_stats import RecentQueries
from ranking_gateway.serving.routes import EXCEPTION_HANDLERS, ROUTES
from ranking_gateway.serving.schemas import RequestError, SearchRequest

KEY = "k" * 24


def _build(root: Path) -> ArtifactPaths:
    for model in ("query_encoder", "reranker"):
        version = root / "model_repository" / model / "1"
        version.mkdir(parents=True)
        (version / "model.py").write_text("# code\n")
        (root / "model_repository" / model / "config.pbtxt").write_text(f'# c\nname: "{model}"\nbackend: "python"\n')
    return ArtifactPaths(root)


def test_each_version_gets_renamed_configs_and_symlinked_weights(tmp_path: Path) -> None:
    repo = LiveRepository(tmp_path / "live")
    a, b = _build(tmp_path / "a"), _build(tmp_path / "b")
    names_a = repo.add(a, "v1", ["query_encoder", "reranker"])
    names_b = repo.add(b, "v1", ["query_encoder", "reranker"])  # the same version elsewhere: its own names
    assert set(names_a) == {"query_encoder", "reranker"} and not set(names_a.values()) & set(names_b.values())
    entry = repo.path / names_a["query_encoder"]
    assert f'name: "{names_a["query_encoder"]}"' in (entry / "config.pbtxt").read_text()
    assert (entry / "1").is_symlink() and (entry / "1").resolve() == (a.model_repository / "query_encoder" / "1").resolve()
    repo.remove(list(names_a.values()))
    assert not entry.exists() and (a.model_repository / "query_encoder" / "1" / "model.py").exists()
    assert names_b["reranker"].endswith(version_suffix("v1", b.root))


def test_a_config_without_a_name_gets_one() -> None:
    assert rename_config('backend: "python"\n', "x__1").startswith('name: "x__1"')
    assert rename_config('name: "a"\ninput [ { name: "input_ids" } ]', "a__2").count('"a__2"') == 1


def test_a_model_without_a_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LiveRepository(tmp_path / "live").add(_build(tmp_path / "a"), "v", ["query_token_encoder"])


def _request(query: str, candidates: int = 100) -> SearchRequest:
    return SearchRequest(query, 10, candidates, True, None)


def test_recent_queries_count_a_bounded_window() -> None:
    recent = RecentQueries(window=5)
    for q in ["a", "b", "a", "c", "a", "b", "b"]:
        recent.record(_request(q))
    assert len(recent) == 5  # the window: a c a b b
    assert [s.query for s in recent.top(2)] == ["a", "b"]
    for _ in range(5):
        recent.record(_request("d"))
    assert [s.query for s in recent.top(3)] == ["d"]  # the rest slid out of the window
    recent.record(_request("d", candidates=20))
    assert [s.candidates for s in recent.top(2)] == [100, 20]  # another cache key, counted apart
    assert recent.top(0) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"artifacts": "relative/dir"}, "invalid_request"),
        ({"artifacts": "/abs", "rollback": True}, "invalid_request"),
        ({"artifacts": "/abs", "warm": -1}, "invalid_request"),
        ({"artifacts": "/abs", "warm": 5000}, "invalid_request"),
        ({"artifacts": "/abs", "colour": "red"}, "unknown_field"),
        ([], "invalid_request"),
    ],
)
def test_bad_deploy_bodies_are_422(body: object, code: str) -> None:
    with pytest.raises(RequestError) as info:
        DeployRequest.parse(body)
    assert (info.value.status, info.value.code) == (422, code)


def test_good_deploy_bodies() -> None:
    assert DeployRequest.parse({"artifacts": "/a", "warm": 10}) == DeployRequest(Path("/a"), None, False, 10)
    assert DeployRequest.parse({"rollback": True}).rollback
    assert DeployRequest.parse({"personalizer_weights": "/w.json"}).personalizer_weights == Path("/w.json")


class RecordingDeployer:
    def __init__(self) -> None:
        self.calls: list[DeployRequest] = []

    async def deploy(self, request: DeployRequest) -> dict:
        self.calls.append(request)
        return {"status": "swapped"}

    def describe(self) -> dict:
        return {"current": {}, "previous": None, "live_models": True, "deploying": False}


def _app(keys: ApiKeys | None) -> tuple[Starlette, RecordingDeployer]:
    app = Starlette(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    deployer = RecordingDeployer()
    app.state.gateway = SimpleNamespace(api_keys=keys, deployer=deployer)
    return app, deployer


async def _post(app: Starlette, host: str, headers: dict | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(host, 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.post("/v1/admin/deploy", json={"artifacts": "/new"}, headers=headers or {})


@pytest.mark.anyio
async def test_without_keys_only_loopback_clients_may_deploy() -> None:
    app, deployer = _app(None)
    refused = await _post(app, "10.1.2.3")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert (await _post(app, "::1")).status_code == 200
    assert (await _post(app, "127.0.0.1")).status_code == 200
    assert [c.artifacts for c in deployer.calls] == [Path("/new"), Path("/new")]


@pytest.mark.anyio
async def test_with_keys_a_deploy_needs_one_even_from_loopback() -> None:
    app, deployer = _app(ApiKeys([KEY]))
    assert (await _post(app, "127.0.0.1")).status_code == 401
    assert (await _post(app, "127.0.0.1", {"Authorization": "Bearer " + "x" * 24})).status_code == 403
    assert (await _post(app, "10.1.2.3", {"Authorization": f"Bearer {KEY}"})).status_code == 200
    assert len(deployer.calls) == 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_an_external_triton_cannot_take_other_models() -> None:
    """`serve --triton-url` alone: no live repository, so a deploy that needs other models is a 501
    naming the flag that gives one."""
    gateway = SimpleNamespace(settings=SimpleNamespace(deadline_ms=2000))
    deployer = Deployer(gateway, None)  # type: ignore[arg-type]
    with pytest.raises(DeployError) as info:
        await deployer._load_models(SimpleNamespace(), [], [])  # type: ignore[arg-type]
    assert (info.value.status, info.value.code) == (501, "live_swap_unsupported")
    assert "--triton-url" in str(info.value) and "--triton-live-repository" in str(info.value)


@pytest.mark.anyio
async def test_a_rollback_before_any_swap_is_a_409() -> None:
    gateway = SimpleNamespace(settings=SimpleNamespace(deadline_ms=2000), current=None)
    deployer = Deployer(gateway, None)  # type: ignore[arg-type]
    with pytest.raises(DeployError) as info:
        await deployer.deploy(DeployRequest(rollback=True))
    assert (info.value.status, info.value.code) == (409, "no_previous_version")


def _args(**kw: object) -> argparse.Namespace:
    base = {"artifacts": None, "rollback": False, "personalizer_weights": None, "warm": 0, "drain_timeout": None}
    return argparse.Namespace(**{**base, **kw})


def test_the_cli_sends_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    body = request_body(_args(artifacts=Path("new"), warm=50))
    assert body == {"rollback": False, "warm": 50, "artifacts": str(tmp_path / "new")}
    assert request_body(_args(rollback=True)) == {"rollback": True, "warm": 0}
    with pytest.raises(CliError):
        request_body(_args())
    with pytest.raises(CliError):
        request_body(_args(rollback=True, personalizer_weights=Path("w.json")))
