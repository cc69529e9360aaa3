"""The CPU models' own check, when Triton loads them, that its onnxruntime can run the graph the
build exported (model_repository/common/cpu_runtime.py), and what the build records for it."""

from __future__ import annotations

import functools
import importlib.util
import re
from types import ModuleType, SimpleNamespace

import pytest

from ranking_build.model_repository import templates_dir
from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.contract import ENCODER, RERANKER


@functools.cache
def cpu_runtime() -> ModuleType:
    """The shared python-backend module, loaded from its template as the build copies it."""
    spec = importlib.util.spec_from_file_location("cpu_runtime_template", templates_dir() / "common" / "cpu_runtime.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ort(version: str, newest_opset: int) -> SimpleNamespace:
    """A stand-in onnxruntime of `version` whose operator schemas go up to `newest_opset`."""
    schemas = [SimpleNamespace(domain="", since_version=v) for v in (1, 13, newest_opset)]
    schemas.append(SimpleNamespace(domain="com.microsoft", since_version=99))  # another domain's do not count
    return SimpleNamespace(__version__=version, capi=SimpleNamespace(_pybind_state=SimpleNamespace(
        get_all_operator_schema=lambda: schemas)))


def _config(opset: str, built: str) -> dict:
    return {"parameters": {"onnx_opset": {"string_value": opset}, "onnxruntime_version": {"string_value": built}}}


def test_a_graph_within_the_runtimes_opsets_loads() -> None:
    check = cpu_runtime().check_onnxruntime
    check(_config("17", "1.20.1"), _ort("1.18.0", 21))
    check(_config("21", "1.20.1"), _ort("1.18.0", 21))
    check({"parameters": {}}, _ort("1.18.0", 21))  # a repository built before the check: nothing to compare


def test_a_newer_opset_than_the_runtime_runs_is_one_line_naming_the_fix() -> None:
    with pytest.raises(RuntimeError) as info:
        cpu_runtime().check_onnxruntime(_config("22", "1.20.1"), _ort("1.18.0", 21))
    message = str(info.value)
    assert "\n" not in message and "opset 22" in message and "up to 21" in message
    assert "ranking-gateway build" in message and "onnxruntime 1.20.1" in message  # rebuild, or the build's runtime


def test_another_onnxruntime_major_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"built with onnxruntime 2\.0\.0, but this Triton runs onnxruntime 1\.18\.0"):
        cpu_runtime().check_onnxruntime(_config("17", "2.0.0"), _ort("1.18.0", 21))


def test_a_runtime_that_lists_no_schemas_is_checked_for_its_major_only() -> None:
    ort = SimpleNamespace(__version__="1.18.0", capi=SimpleNamespace())
    assert cpu_runtime().supported_onnx_opset(ort) is None
    cpu_runtime().check_onnxruntime(_config("99", "1.20.1"), ort)


def test_the_supported_opset_is_the_one_onnxruntime_states_when_it_refuses(tmp_path) -> None:
    """The schemas' newest opset is what onnxruntime itself names as its limit for a newer model."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    supported = cpu_runtime().supported_onnx_opset(onnxruntime)
    assert supported is not None and supported >= 17
    value = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [value("x", TensorProto.FLOAT, [1])], [value("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", supported + 1)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "newer.onnx"))
    with pytest.raises(Exception) as info:
        onnxruntime.InferenceSession(str(tmp_path / "newer.onnx"), providers=["CPUExecutionProvider"])
    stated = re.search(r"support for domain ai\.onnx is till opset (\d+)", str(info.value))
    assert stated is not None and int(stated.group(1)) == supported


def test_the_build_records_its_toolchain(artifacts: ArtifactPaths) -> None:
    import onnxruntime
    import torch

    manifest = Manifest.read(artifacts.root)
    tools = manifest.toolchain
    assert tools is not None and tools.onnx_opset == 17
    assert (tools.onnxruntime, tools.torch) == (onnxruntime.__version__, str(torch.__version__))
    assert tools.tensorrt is None and tools.triton_server is None  # the CPU target's
    for contract in (ENCODER, RERANKER):
        config = (artifacts.model_repository / contract.name / "config.pbtxt").read_text()
        recorded = dict(re.findall(r'key: "(onnx_opset|onnxruntime_version)" value: \{ string_value: "([^"]*)" \}', config))
        if manifest.cpu_runtime and manifest.cpu_runtime.startswith("onnx"):
            assert recorded == {"onnx_opset": "17", "onnxruntime_version": onnxruntime.__version__}
        else:  # torch runtimes serve no ONNX graph
            assert recorded == {"onnx_opset": "", "onnxruntime_version": ""}


@pytest.mark.parametrize("runtime", ["onnx_fp32", "torch_fp32"])
def test_an_onnx_runtime_records_the_opset_of_the_graph_it_serves(artifacts: ArtifactPaths, tmp_path, runtime) -> None:
    from ranking_build.model_repository import write_cpu_model
    from ranking_gateway.core.config import TritonModelSettings

    serving = TritonModelSettings(max_batch_size=8, preferred_batch_sizes=(2, 4), queue_delay_us=100)
    graph = artifacts.onnx_dir / f"{ENCODER.name}.onnx"
    write_cpu_model(tmp_path, ENCODER, serving, runtime, graph, None, 384, "1.20.1")  # type: ignore[arg-type]
    config = (tmp_path / ENCODER.name / "config.pbtxt").read_text()
    opset = "17" if runtime == "onnx_fp32" else ""
    assert f'key: "onnx_opset" value: {{ string_value: "{opset}" }}' in config
    assert f'key: "onnxruntime_version" value: {{ string_value: "{"1.20.1" if opset else ""}" }}' in config


def test_threads_are_the_configs_or_all_cores_and_instances_are_counted(monkeypatch) -> None:
    runtime = cpu_runtime()
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 16)
    two = {"instance_group": [{"count": 2, "kind": "KIND_CPU"}]}
    assert runtime.threads_per_instance(two) == 16
    assert runtime.threads_per_instance({**two, "parameters": {"threads": {"string_value": "3"}}}) == 3
    assert runtime.instance_count(two) == 2 and runtime.instance_count({}) == 1
    assert runtime.instance_count({"instance_group": [{"count": 2}, {"count": 3}]}) == 5


def test_a_loaded_model_is_frozen_out_of_the_garbage_collectors_scans(tmp_path) -> None:
    """What `initialize` loaded lives as long as the stub: frozen, neither the collector nor the
    stub's teardown on unload scans it (1.2-1.3 CPU-s a stub before, README "Live swap")."""
    import gc
    import json

    import torch

    class Doubler(cpu_runtime().BatchingPythonModel):
        @staticmethod
        def load_torch(hf_dir):
            return torch.nn.Identity()

        @staticmethod
        def forward(model, tensors):
            return model(tensors["input_ids"].float() * 2)

    config = {"input": [{"name": "input_ids"}, {"name": "attention_mask"}], "output": [{"name": "embedding"}],
              "parameters": {"runtime": {"string_value": "torch_fp32"}, "threads": {"string_value": "1"}}}
    gc.unfreeze()
    try:
        model = Doubler()
        model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"})
        assert gc.get_freeze_count() > 0
        assert not any(obj is model.model for obj in gc.get_objects())  # frozen: out of every generation
    finally:
        gc.unfreeze()
