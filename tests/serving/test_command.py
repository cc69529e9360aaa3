"""`ranking-gateway serve` as a user runs it: embedded Triton, real HTTP, SIGTERM, no orphans."""

import os
import signal
import time
from pathlib import Path

import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
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


def serve_cli(capsys, *argv: str) -> tuple[int, str]:
    """`ranking-gateway serve ...` in-process: these flag checks fail before Triton starts."""
    from ranking_gateway.cli import main

    status = main(["serve", *argv])
    return status, capsys.readouterr().err


def test_retrieval_and_rerank_length_flags_reach_the_settings(artifacts: ArtifactPaths) -> None:
    from ranking_gateway.cli import build_parser
    from ranking_gateway.serving.command import settings_from_args
    from ranking_gateway.serving.plan import resolve

    args = build_parser().parse_args(
        ["serve", "--artifacts", str(artifacts.root), "--retrieval", "bm25", "--rerank-max-length", "64"]
    )
    settings = settings_from_args(args)
    assert (settings.retrieval, settings.rerank_max_length) == ("bm25", 64)
    plan = resolve(settings)  # valid for this build (reranker max length 128, BM25 index)
    assert plan.retrieval == "bm25" and plan.rerank is not None and plan.rerank.max_length == 64
    defaults = settings_from_args(build_parser().parse_args(["serve", "--artifacts", str(artifacts.root)]))
    assert (defaults.retrieval, defaults.rerank_max_length, defaults.rerank_alpha) == (None, None, None)
    plan = resolve(defaults)  # resolved from the build: hybrid (it has BM25), its 128 tokens, alpha 1 (no report)
    assert plan.retrieval == "hybrid" and plan.rerank is not None
    assert (plan.rerank.max_length, plan.rerank.alpha, plan.rerank.depth) == (128, 1.0, 30)


def test_unknown_retrieval_mode_is_a_usage_error(artifacts: ArtifactPaths, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        serve_cli(capsys, "--artifacts", str(artifacts.root), "--retrieval", "sparse")
    assert info.value.code == 2 and "invalid choice: 'sparse'" in capsys.readouterr().err


def test_bm25_modes_on_artifacts_without_bm25_are_one_line_errors(legacy_artifacts: ArtifactPaths, capsys) -> None:
    for mode in ("hybrid", "bm25"):
        status, err = serve_cli(capsys, "--artifacts", str(legacy_artifacts.root), "--retrieval", mode)
        assert status == 2 and err.count("\n") == 1 and err.startswith("error: --retrieval:") and "BM25" in err


def test_rerank_max_length_beyond_the_build_is_a_one_line_error(artifacts: ArtifactPaths, capsys) -> None:
    for length in ("256", "8"):
        status, err = serve_cli(capsys, "--artifacts", str(artifacts.root), "--rerank-max-length", length)
        assert status == 2 and err.count("\n") == 1 and "--rerank-max-length" in err and "128" in err


def test_admission_flags_reach_the_settings_and_bad_ones_are_one_line_errors(artifacts: ArtifactPaths, capsys) -> None:
    from ranking_gateway.cli import build_parser
    from ranking_gateway.serving.command import settings_from_args

    args = build_parser().parse_args(["serve", "--artifacts", str(artifacts.root), "--max-inflight", "2", "--max-queue", "0"])
    admission = settings_from_args(args).admission
    assert (admission.max_inflight, admission.max_queue) == (2, 0)
    status, err = serve_cli(capsys, "--artifacts", str(artifacts.root), "--max-inflight", "0")
    assert status == 2 and err.count("\n") == 1 and "--max-inflight" in err


def test_a_second_gateway_on_an_owned_event_log_is_a_one_line_error(artifacts: ArtifactPaths, triton, tmp_path: Path) -> None:
    import subprocess
    import sys

    events = tmp_path / "events"
    flags = ["--event-log", str(events)]
    with serve_process(artifacts, tmp_path / "first.log", *flags, triton_url=triton.grpc_url):
        second = subprocess.run(
            [sys.executable, "-m", "ranking_gateway.cli", "serve", "--artifacts", str(artifacts.root),
             "--triton-url", triton.grpc_url, "--port", "1", *flags],
            capture_output=True, text=True, timeout=120,
        )
    assert second.returncode == 2, second.stderr
    assert "Traceback" not in second.stderr + second.stdout
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "in use by another process" in errors[0], second.stderr


def test_the_protected_head_flag_reaches_the_settings_and_rejects_what_is_not_a_number(capsys) -> None:
    from ranking_gateway.cli import build_parser
    from ranking_gateway.serving.command import settings_from_args

    def head_z(*flag: str) -> float | None:
        args = build_parser().parse_args(["serve", "--artifacts", "/a", *flag])
        return settings_from_args(args).personalization.protect_head_z

    assert head_z() == 0.7
    assert head_z("--personalizer-protect-head-z", "1.5") == 1.5
    assert head_z("--personalizer-protect-head-z", "none") is None
    for bad in ("nan", "inf", "high"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--artifacts", "/a", "--personalizer-protect-head-z", bad])
        assert "--personalizer-protect-head-z" in capsys.readouterr().err
