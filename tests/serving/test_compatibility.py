"""The gateway refuses, in one line, a Triton that cannot serve its build: TensorRT engines on
another Triton release, a model Triton could not load (its reason quoted), a repository without
the model. The CPU models check their onnxruntime themselves when Triton loads them; here a real
Triton loads a build tampered to need a newer one, embedded and external."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from ranking_build.model_repository import templates_dir
from ranking_gateway.core.artifacts import ArtifactPaths, Manifest, ModelEntry, Toolchain
from ranking_gateway.core.contract import ENCODER, RERANKER
from ranking_gateway.serving.compatibility import IncompatibleTriton, check_triton, problem, reason_line
from tests.conftest import serve_process

URL = "triton:8001"
NEEDED = [ENCODER.name, RERANKER.name]
PYTHON_BACKEND_REASON = (
    "Internal: RuntimeError: the model is ONNX opset 99, but this Triton's onnxruntime 1.18.0 runs opsets up to 21: "
    "rebuild the artifacts\n\nAt:\n  /models/query_encoder/1/cpu_runtime.py(62): check_onnxruntime\n"
)


def _manifest(target: str = "cpu", toolchain: Toolchain | None = None) -> Manifest:
    model = ModelEntry("src", "a" * 64, "b" * 64, 64, 0.0, 8)
    return Manifest(target, "onnx_fp32" if target == "cpu" else None, "c.jsonl", 3, 8, "flat", "v", model, model,
                    toolchain=toolchain)


TENSORRT = Toolchain(onnx_opset=17, tensorrt="10.5.0", triton_server="2.51.0",
                     triton_image="nvcr.io/nvidia/tritonserver:24.10-py3")


def _index(**states: str) -> list[dict]:
    return [{"name": name, "version": "1", "state": state} for name, state in states.items()]


def test_every_model_ready_is_served() -> None:
    assert problem(_manifest(), NEEDED, "2.51.0", _index(query_encoder="READY", reranker="READY"), URL) is None


def test_tensorrt_engines_need_the_triton_release_they_were_built_for() -> None:
    ready = _index(query_encoder="READY", reranker="READY")
    assert problem(_manifest("tensorrt", TENSORRT), NEEDED, "2.51.0", ready, URL) is None
    message = problem(_manifest("tensorrt", TENSORRT), NEEDED, "2.53.0", ready, URL)
    assert message is not None and "\n" not in message
    assert all(s in message for s in ("2.53.0", "TensorRT 10.5.0", "Triton 2.51.0", "tritonserver:24.10-py3", URL))
    # the CPU target's python-backend models run on any release; a manifest from before the
    # toolchain was recorded cannot say (Triton's own load errors still apply)
    assert problem(_manifest("cpu", replace(TENSORRT, triton_server=None)), NEEDED, "2.53.0", ready, URL) is None
    assert problem(_manifest("tensorrt", None), NEEDED, "2.53.0", ready, URL) is None


def test_a_model_triton_could_not_load_is_refused_with_its_reason() -> None:
    index = _index(reranker="READY") + [
        {"name": "query_encoder", "version": "1", "state": "UNAVAILABLE", "reason": PYTHON_BACKEND_REASON}
    ]
    message = problem(_manifest(), NEEDED, "2.51.0", index, URL)
    assert message is not None and "\n" not in message and "At:" not in message
    assert "'query_encoder' (UNAVAILABLE)" in message and "ONNX opset 99" in message and URL in message


def test_a_model_missing_from_the_repository_is_refused() -> None:
    message = problem(_manifest(), NEEDED, "2.51.0", _index(query_encoder="READY"), URL)
    assert message is not None and "no model 'reranker'" in message


def test_a_model_still_loading_or_unloaded_without_a_reason_is_not_refused() -> None:
    """The gateway serves degraded until it is ready, as when Triton goes away and comes back."""
    for state in ("LOADING", "UNAVAILABLE", ""):
        assert problem(_manifest(), NEEDED, "2.51.0", _index(query_encoder=state, reranker="READY"), URL) is None
    # another version ready is enough
    index = _index(reranker="READY") + [
        {"name": "query_encoder", "version": "1", "state": "UNAVAILABLE", "reason": "gone"},
        {"name": "query_encoder", "version": "2", "state": "READY"},
    ]
    assert problem(_manifest(), NEEDED, "2.51.0", index, URL) is None


def test_reason_line() -> None:
    assert reason_line(PYTHON_BACKEND_REASON).endswith("rebuild the artifacts")
    assert reason_line("a\n  b") == "a b" and reason_line(None) == "no reason given"


def test_a_triton_that_does_not_answer_is_not_refused(caplog: pytest.LogCaptureFixture) -> None:
    from ranking_gateway.serving.triton_server import free_port

    check_triton(f"127.0.0.1:{free_port()}", _manifest(), NEEDED, wait_s=0.0)
    assert "degraded until it answers" in caplog.text


def test_the_running_triton_serves_its_own_build(artifacts: ArtifactPaths, triton) -> None:
    check_triton(triton.grpc_url, Manifest.read(artifacts.root), NEEDED, wait_s=5.0)


# --- a real Triton over a build tampered to need a newer onnxruntime ---------------------------


def _config_parameter(config: str, key: str, value: str) -> str:
    pattern = rf'(key: "{key}" value: {{ string_value: ")[^"]*(")'
    assert re.search(pattern, config), key
    return re.sub(pattern, rf"\g<1>{value}\g<2>", config)


def onnx_copy(artifacts: ArtifactPaths, root: Path, encoder_opset: int | None = None) -> ArtifactPaths:
    """The session build with both models on ONNX Runtime fp32 (whatever runtime `build` chose on
    this CPU), as the build records it; `encoder_opset`: the query encoder's recorded opset instead."""
    import onnxruntime

    from ranking_build.model_repository import onnx_opset

    root.mkdir(parents=True)
    shutil.copy2(artifacts.manifest, root / "manifest.json")
    for name in ("index", "tokenizers"):
        (root / name).symlink_to(artifacts.root / name)
    for contract in (ENCODER, RERANKER):
        built = artifacts.model_repository / contract.name
        version = root / "model_repository" / contract.name / "1"
        version.mkdir(parents=True)
        for code in (templates_dir() / contract.name / "model.py", templates_dir() / "common" / "cpu_runtime.py"):
            shutil.copy2(code, version / code.name)
        graph = artifacts.onnx_dir / f"{contract.name}.onnx"
        (version / "model.onnx").symlink_to(graph)
        config = (built / "config.pbtxt").read_text()
        config = _config_parameter(config, "runtime", "onnx_fp32")
        opset = encoder_opset if contract is ENCODER and encoder_opset is not None else onnx_opset(graph)
        config = _config_parameter(config, "onnx_opset", str(opset))
        config = _config_parameter(config, "onnxruntime_version", onnxruntime.__version__)
        (version.parent / "config.pbtxt").write_text(config)
    return ArtifactPaths(root)


def too_new_opset() -> int:
    """An opset the installed onnxruntime cannot run."""
    import onnxruntime

    from tests.ranking_build.test_cpu_runtime import cpu_runtime

    supported = cpu_runtime().supported_onnx_opset(onnxruntime)
    assert supported is not None and supported >= 17
    return supported + 1


def _serve(root: ArtifactPaths, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    from ranking_gateway.serving.triton_server import free_port

    cmd = [sys.executable, "-m", "ranking_gateway.cli", "serve", "--artifacts", str(root.root),
           "--port", str(free_port()), "--event-log", str(tmp_path / "events"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _refusal(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


def test_the_embedded_triton_refuses_a_model_its_onnxruntime_cannot_run(artifacts: ArtifactPaths, tmp_path: Path) -> None:
    opset = too_new_opset()
    error = _refusal(_serve(onnx_copy(artifacts, tmp_path / "tampered", encoder_opset=opset), tmp_path))
    assert "'query_encoder' (UNAVAILABLE)" in error and f"ONNX opset {opset}" in error
    assert "ranking-gateway build" in error


def test_an_external_triton_that_could_not_load_a_model_is_refused(artifacts: ArtifactPaths, tmp_path: Path) -> None:
    from ranking_gateway.serving.triton_server import EmbeddedTriton

    opset = too_new_opset()
    tampered = onnx_copy(artifacts, tmp_path / "tampered", encoder_opset=opset)
    with EmbeddedTriton(tampered.model_repository, log_path=tmp_path / "triton.log") as triton:
        index = httpx.post(f"{triton.http_url}/v2/repository/index", json={}).json()
        states = {m["name"]: m["state"] for m in index}
        assert states == {"query_encoder": "UNAVAILABLE", "reranker": "READY"}  # the reranker's opset is its own
        with pytest.raises(IncompatibleTriton, match=f"ONNX opset {opset}"):
            check_triton(triton.grpc_url, Manifest.read(tampered.root), NEEDED, wait_s=5.0)
        error = _refusal(_serve(tampered, tmp_path, "--triton-url", triton.grpc_url))
    assert "'query_encoder' (UNAVAILABLE)" in error and triton.grpc_url in error


def test_the_matching_onnx_build_starts_and_searches(artifacts: ArtifactPaths, tmp_path: Path) -> None:
    matching = onnx_copy(artifacts, tmp_path / "matching")
    with serve_process(matching, tmp_path / "serve.log", "--event-log", str(tmp_path / "events"), ready="/readyz") as gw:
        body = gw.post("/v1/search", json={"query": "how are diamonds formed", "k": 3}).json()
        assert body["reranked"] and len(body["results"]) == 3
    assert "serves every model this build needs" in (tmp_path / "serve.log").read_text()
