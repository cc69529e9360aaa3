"""The CUDA target (ranking_build.cuda_model): the python-backend models on KIND_GPU instances in
PyTorch fp16. What needs a GPU runs where torch sees one and is skipped, with the reason, elsewhere;
the rest (configs, the build, the fp16 path itself on the CPU, the refusal) runs everywhere."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ranking_build.cuda_model import MAX_ABS_DIFF, RUNTIME, cuda_unavailable_reason
from ranking_build.model_repository import load_cpu_model, render_config
from ranking_build.models import default_encoder_path
from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.config import BuildSettings, TritonModelSettings
from ranking_gateway.core.contract import ENCODER, QUERY_TOKENS, RERANKER, ModelContract

from tests.conftest import CORPUS
from tests.ranking_build.test_cpu_runtime import cpu_runtime
from tests.ranking_build.test_model_repository import model_inputs, model_version

NO_GPU = cuda_unavailable_reason()
needs_gpu = pytest.mark.skipif(NO_GPU is not None, reason=f"needs a CUDA GPU: {NO_GPU}")

SERVING = TritonModelSettings(max_batch_size=8, preferred_batch_sizes=(2, 4), queue_delay_us=100, instances=2)


@pytest.mark.parametrize("contract", [ENCODER, RERANKER, QUERY_TOKENS], ids=lambda c: c.name)
def test_the_cuda_target_is_the_python_models_on_gpu_instances(contract: ModelContract) -> None:
    config = render_config(contract, "cuda", SERVING, dim=32, runtime=RUNTIME, onnx_opset="", onnxruntime_version="")
    assert "$" not in config and 'backend: "python"' in config
    assert "instance_group [ { count: 2 kind: KIND_GPU } ]" in config
    assert f'key: "runtime" value: {{ string_value: "{RUNTIME}" }}' in config
    assert config.count("allow_ragged_batch: true") == len(contract.inputs)  # the model pads merged requests itself
    cpu = render_config(contract, "cpu", SERVING, dim=32, runtime="onnx_fp32", onnx_opset="", onnxruntime_version="")
    assert "kind: KIND_CPU" in cpu and "kind: KIND_GPU" not in cpu


@pytest.mark.parametrize("contract", [ENCODER, RERANKER], ids=lambda c: c.name)
def test_the_fp16_path_computes_the_fp32_models_outputs(
    untrained_reranker: Path, tmp_path: Path, contract: ModelContract
) -> None:
    """The CUDA runtime's own code (weights and hung-on tensors cast and moved, inputs moved, fp32
    out), run on the CPU's fp16 kernels: what changes on a GPU is only the device."""
    runtime = cpu_runtime()
    version = model_version(tmp_path, contract, default_encoder_path() if contract is ENCODER else untrained_reranker)
    expected = load_cpu_model(version, contract, "torch_fp32").run(model_inputs())
    spec = importlib.util.spec_from_file_location(f"cuda_test_{contract.name}", version / "model.py")
    assert spec is not None and spec.loader is not None
    model_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model_py)
    config = {"input": [{"name": n} for n in contract.inputs], "output": [{"name": contract.output}],
              "parameters": {"runtime": {"string_value": RUNTIME}}}
    original = runtime.cuda_device
    runtime.cuda_device = lambda torch, device_id: torch.device("cpu")
    try:
        python_model = model_py.TritonPythonModel
        half = runtime.CpuModel(version, config, python_model.load_torch, python_model.forward)
    finally:
        runtime.cuda_device = original
    assert str(next(half._model.parameters()).dtype) == "torch.float16"
    got = half.run(model_inputs())
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=MAX_ABS_DIFF)


@pytest.mark.skipif(NO_GPU is None, reason="a GPU is here: the refusal is for machines without one")
def test_without_a_gpu_the_cuda_runtime_refuses_in_one_line(tmp_path: Path) -> None:
    version = model_version(tmp_path, ENCODER, default_encoder_path())
    with pytest.raises(RuntimeError, match=r"sees none: rebuild the artifacts with --target cpu") as refused:
        load_cpu_model(version, ENCODER, RUNTIME)
    assert "\n" not in str(refused.value)


def test_a_device_beyond_the_gpus_torch_sees_is_refused() -> None:
    class Cuda:
        @staticmethod
        def is_available() -> bool:
            return True

        @staticmethod
        def device_count() -> int:
            return 1

    torch = type("torch", (), {"cuda": Cuda})
    with pytest.raises(RuntimeError, match="GPU 1, but torch sees 1"):
        cpu_runtime().cuda_device(torch, 1)


@pytest.fixture(scope="module")
def cuda_artifacts(tmp_path_factory: pytest.TempPathFactory, untrained_reranker: Path) -> ArtifactPaths:
    from ranking_build.pipeline import run_build

    root = tmp_path_factory.mktemp("cuda-artifacts") / "small"
    run_build(BuildSettings(corpus=CORPUS, artifacts=root, reranker=untrained_reranker, max_length=128, target="cuda"))
    return ArtifactPaths(root)


def test_a_cuda_build_writes_gpu_models_and_says_what_it_checked(cuda_artifacts: ArtifactPaths) -> None:
    manifest = Manifest.read(cuda_artifacts.root)
    assert manifest.target == "cuda" and manifest.cpu_runtime is None
    for contract, entry in ((ENCODER, manifest.encoder), (RERANKER, manifest.reranker)):
        model = cuda_artifacts.model_repository / contract.name
        config = (model / "config.pbtxt").read_text()
        assert re.search(r"kind: KIND_GPU", config) and f'string_value: "{RUNTIME}"' in config
        assert (model / "1" / "hf" / "model.safetensors").is_file()
        assert entry is not None and entry.engine is not None
        assert entry.engine["runtime"] == RUNTIME and entry.engine["precision"] == "fp16"
        if NO_GPU is None:
            assert entry.engine["checked"] and entry.engine["max_abs_diff"] <= MAX_ABS_DIFF
        else:
            assert entry.engine["checked"] is False and entry.engine["why_not_checked"] == NO_GPU
    json.dumps(manifest.encoder.engine)  # the manifest holds it as JSON


@needs_gpu
def test_triton_serves_the_cuda_build_on_the_gpu(cuda_artifacts: ArtifactPaths) -> None:
    """Embedded Triton loads the KIND_GPU python models, and they answer as the CPU build's would."""
    from ranking_gateway.serving.tokenization import TextTokenizer
    from ranking_gateway.serving.triton_client import TritonModels
    from ranking_gateway.serving.triton_server import EmbeddedTriton

    tokenizer = TextTokenizer(cuda_artifacts.tokenizer(ENCODER.name), 64)
    batch = tokenizer.encode(["why do volcanoes erupt", "the speed of light"])
    version = cuda_artifacts.model_repository / ENCODER.name / "1"
    expected = load_cpu_model(version, ENCODER, "torch_fp32").run({n: getattr(batch, n) for n in ENCODER.inputs})

    async def encode(url: str) -> np.ndarray:
        models = TritonModels(url, timeout_s=60, chunk_size=16)
        try:
            return await models.encode(batch)
        finally:
            await models.close()

    with EmbeddedTriton(cuda_artifacts.model_repository) as triton:
        got = asyncio.run(encode(triton.grpc_url))
    np.testing.assert_allclose(got, expected, atol=MAX_ABS_DIFF)
