"""API keys: who may write events and read or erase users (and, optionally, search)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.config import GatewaySettings, PersonalizationSettings
from ranking_gateway.core.errors import CliError
from ranking_gateway.serving.auth import ApiKeys, is_loopback
from tests.conftest import SLOW_CI_DEADLINE_MS, gateway_client

KEY = "k3y-" + "a" * 28
OTHER = "k3y-" + "b" * 28
EVENT = {"user_id": "ada", "doc_id": "cooking-1", "type": "click"}


def key_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "keys"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_key_file_is_read_and_checked(tmp_path: Path) -> None:
    keys = ApiKeys.read(key_file(tmp_path, "# operators", "", KEY, OTHER))
    assert keys.valid(KEY) and keys.valid(OTHER) and not keys.valid(KEY[:-1]) and not keys.valid("")
    with pytest.raises(CliError, match="no keys"):
        ApiKeys.read(key_file(tmp_path, "# nothing here"))
    with pytest.raises(CliError, match="at least 16") as short:
        ApiKeys.read(key_file(tmp_path, "tooshort"))
    assert "tooshort" not in str(short.value)  # a key never appears in a message
    with pytest.raises(CliError, match="cannot be read"):
        ApiKeys.read(tmp_path / "missing")


def test_rerank_is_protected_like_search() -> None:
    """Both rank and read no user's data: open unless `--protect-search`; the other /v1/ routes never."""
    open_, protected = ApiKeys([KEY]), ApiKeys([KEY], protect_search=True)
    assert not open_.protects("/v1/rerank") and not open_.protects("/v1/search") and open_.protects("/v1/events")
    assert protected.protects("/v1/rerank") and protected.protects("/v1/search")
    assert not protected.protects("/healthz")


def test_loopback_hosts_are_told_apart() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("gateway")
    assert not is_loopback(None)


def test_protect_search_without_a_key_file_is_a_one_line_error(artifacts: ArtifactPaths, capsys) -> None:
    from ranking_gateway.cli import main

    assert main(["serve", "--artifacts", str(artifacts.root), "--protect-search"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--api-key-file" in err


def settings(artifacts: ArtifactPaths, tmp_path: Path, **kw: object) -> GatewaySettings:
    return GatewaySettings(
        artifacts=artifacts.root, deadline_ms=SLOW_CI_DEADLINE_MS, api_key_file=key_file(tmp_path, KEY),
        personalization=PersonalizationSettings(event_log=tmp_path / "ev"), **kw,
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}



@pytest.mark.anyio
async def test_writes_and_user_data_need_a_key_search_does_not(
    artifacts: ArtifactPaths, triton, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with gateway_client(settings(artifacts, tmp_path), triton.grpc_url) as client:
        missing = await client.post("/v1/events", json=EVENT)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await client.post("/v1/events", json=EVENT, headers=bearer(OTHER))
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
        assert (await client.post("/v1/events", json=EVENT, headers={"Authorization": KEY})).status_code == 401
        assert (await client.get("/v1/users/ada/profile")).status_code == 401  # nothing recorded so far
        assert (await client.post("/v1/events", json=EVENT, headers=bearer(KEY))).status_code == 202
        assert (await client.get("/v1/users/ada/profile", headers=bearer(OTHER))).status_code == 403
        assert (await client.get("/v1/users/ada/profile", headers=bearer(KEY))).status_code == 200
        assert (await client.delete("/v1/users/ada")).status_code == 401
        assert (await client.get("/v1/users/ada/profile", headers=bearer(KEY))).status_code == 200  # not erased
        assert (await client.delete("/v1/users/ada", headers=bearer(KEY))).status_code == 200
        assert (await client.get("/v1/users/ada/profile", headers=bearer(KEY))).status_code == 404
        assert (await client.post("/v1/search", json={"query": "risotto", "k": 3, "candidates": 10})).status_code == 200
        doc = (await client.get("/openapi.json")).json()
        assert doc["paths"]["/v1/events"]["post"]["security"] == [{"apiKey": []}]
        assert {"401", "403"} <= set(doc["paths"]["/v1/users/{user_id}"]["delete"]["responses"])
        assert "security" not in doc["paths"]["/v1/search"]["post"]
        metrics = (await client.get("/metrics")).text
    audit = [r.getMessage() for r in caplog.records if r.name == "ranking_gateway.audit"]
    assert len(audit) == 1 and audit[0].startswith("erased user sha256:") and "ada" not in audit[0]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert KEY not in logged and OTHER not in logged and KEY not in metrics


@pytest.mark.anyio
async def test_protect_search_extends_the_key_to_search(artifacts: ArtifactPaths, triton, tmp_path: Path) -> None:
    async with gateway_client(settings(artifacts, tmp_path, protect_search=True), triton.grpc_url) as client:
        body = {"query": "risotto", "k": 3, "candidates": 10}
        assert (await client.post("/v1/search", json=body)).status_code == 401
        assert (await client.post("/v1/search", json=body, headers=bearer(KEY))).status_code == 200
        assert (await client.get("/healthz")).status_code == 200  # health stays open
        doc = (await client.get("/openapi.json")).json()
        assert doc["paths"]["/v1/search"]["post"]["security"] == [{"apiKey": []}]
