"""The Triton model repository the build writes: configs from the contract, one model.py per model."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from ranking_build.model_repository import copy_model_code, load_cpu_model, render_config, templates_dir
from ranking_build.models import default_encoder_path
from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.config import TritonModelSettings
from ranking_gateway.core.contract import DOCUMENT_TOKENS, ENCODER, QUERY_TOKENS, RERANKER, ModelContract


def _declared(config: str, block: str) -> list[str]:
    body = re.search(rf"^{block} \[\n(.*?)\n\]", config, re.S | re.M)
    assert body is not None, block
    return re.findall(r'name: "(\w+)"', body.group(1))


@pytest.mark.parametrize("contract", [ENCODER, RERANKER], ids=lambda c: c.name)
def test_built_configs_declare_the_contract(artifacts: ArtifactPaths, contract: ModelContract) -> None:
    config = (artifacts.model_repository / contract.name / "config.pbtxt").read_text()
    assert re.search(r'^name: "(\w+)"', config, re.M).group(1) == contract.name
    assert _declared(config, "input") == list(contract.inputs)
    assert _declared(config, "output") == [contract.output]
    assert config.count("allow_ragged_batch: true") == len(contract.inputs)
    assert f"data_type: TYPE_{contract.output_dtype}" in config and "task" not in config


def test_each_model_runs_its_own_model_py(artifacts: ArtifactPaths) -> None:
    codes = {}
    for contract in (ENCODER, RERANKER):
        version = artifacts.model_repository / contract.name / "1"
        assert (version / "cpu_runtime.py").read_text() == (templates_dir() / "common" / "cpu_runtime.py").read_text()
        codes[contract.name] = (version / "model.py").read_text()
        assert codes[contract.name] == (templates_dir() / contract.name / "model.py").read_text()
    assert codes[ENCODER.name] != codes[RERANKER.name]


def test_tensorrt_config_has_fixed_shape_batches() -> None:
    serving = TritonModelSettings(max_batch_size=8, preferred_batch_sizes=(2, 4), queue_delay_us=100)
    config = render_config(RERANKER, "tensorrt", serving, dim=1)
    assert "$" not in config and "allow_ragged_batch" not in config
    assert 'platform: "tensorrt_plan"' in config and "KIND_GPU" in config
    assert _declared(config, "input") == list(RERANKER.inputs) and _declared(config, "output") == [RERANKER.output]


@pytest.mark.parametrize("contract", [QUERY_TOKENS, DOCUMENT_TOKENS], ids=lambda c: c.name)
@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_token_encoder_templates_declare_per_token_outputs(contract: ModelContract, target: str) -> None:
    """Both late-interaction sides have a template for each target, with [tokens, dim] outputs."""
    serving = TritonModelSettings(max_batch_size=8, preferred_batch_sizes=(2, 4), queue_delay_us=100)
    config = render_config(
        contract, target, serving, dim=32, runtime="onnx_fp32", onnx_opset=17, onnxruntime_version="1.20.1"  # type: ignore[arg-type]
    )
    assert "$" not in config and f'name: "{contract.name}"' in config and "dims: [ -1, 32 ]" in config
    assert _declared(config, "input") == list(contract.inputs) and _declared(config, "output") == [contract.output]


def model_inputs() -> dict[str, np.ndarray]:
    """Four rows of 24 token ids for any model's inputs, one padded after 9 tokens, a pair's
    second segment from token 8."""
    rng = np.random.default_rng(0)
    mask = np.ones((4, 24), dtype=np.int64)
    mask[1, 9:] = 0
    return {
        "input_ids": rng.integers(1000, 20000, mask.shape) * mask,
        "attention_mask": mask,
        "token_type_ids": np.concatenate([np.zeros((4, 8), np.int64), mask[:, 8:]], axis=1),
    }


def model_version(root: Path, contract: ModelContract, hf: Path) -> Path:
    """A model version directory as the build writes it for a torch runtime, weights linked from `hf`."""
    version = root / contract.name / "1"
    version.mkdir(parents=True)
    copy_model_code(contract, version)
    (version / "hf").symlink_to(hf)
    return version


@pytest.mark.parametrize("contract", [ENCODER, RERANKER], ids=lambda c: c.name)
def test_torch_runtime_of_model_py_matches_the_onnx_export(
    artifacts: ArtifactPaths, untrained_reranker: Path, tmp_path: Path, contract: ModelContract
) -> None:
    """model.py's torch computation is the one exported to ONNX (ranking_build.models), padding included."""
    version = model_version(tmp_path, contract, default_encoder_path() if contract is ENCODER else untrained_reranker)
    shutil.copy2(artifacts.onnx_dir / f"{contract.name}.onnx", version / "model.onnx")
    inputs = model_inputs()
    torch_out = load_cpu_model(version, contract, "torch_fp32").run(inputs)
    onnx_out = load_cpu_model(version, contract, "onnx_fp32").run(inputs)
    assert torch_out.shape == onnx_out.shape == (4, 384 if contract is ENCODER else 1)
    np.testing.assert_allclose(torch_out, onnx_out, atol=1e-4)
