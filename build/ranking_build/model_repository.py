"""Write the Triton model repository from the templates in the project's `model_repository/`.

CPU target: python-backend models (the model's own model.py + the shared cpu_runtime.py);
ONNX runtimes get their ONNX file, torch runtimes get Hugging Face weights in `1/hf`.
CUDA target: the same python-backend models on `KIND_GPU` instances, runtime `torch_cuda_fp16`.
TensorRT target: `model.plan` with a `tensorrt_plan` config. Both declare the names of
`ranking_gateway.core.contract`, so the gateway does not know which one it talks to.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from string import Template
from typing import Any

from ranking_gateway.core.config import PythonRuntime, Target, TritonModelSettings
from ranking_gateway.core.contract import ModelContract


def templates_dir() -> Path:
    """The templates: packaged with the wheel, or the repository folder in a source checkout."""
    packaged = Path(__file__).resolve().parent / "model_repository_templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "model_repository"


def _inputs(contract: ModelContract, ragged: bool) -> str:
    # ragged: the python backend pads the merged requests itself; a TensorRT engine needs one shape
    flag = " allow_ragged_batch: true" if ragged else ""
    return ",\n".join(
        f'  {{ name: "{name}" data_type: TYPE_{contract.input_dtype} dims: [ -1 ]{flag} }}'
        for name in contract.inputs
    )


def render_config(contract: ModelContract, target: Target, serving: TritonModelSettings, **values: object) -> str:
    name = "config.tensorrt.pbtxt" if target == "tensorrt" else "config.pbtxt"
    template = Template((templates_dir() / contract.name / name).read_text())
    return template.substitute(
        name=contract.name,
        inputs=_inputs(contract, ragged=target != "tensorrt"),
        instance_kind="KIND_CPU" if target == "cpu" else "KIND_GPU",
        output=contract.output,
        output_dtype=contract.output_dtype,
        max_batch_size=serving.max_batch_size,
        preferred_batch_sizes=", ".join(str(s) for s in serving.preferred_batch_sizes),
        queue_delay_us=serving.queue_delay_us,
        instances=serving.instances,
        threads=serving.threads,
        **values,
    )


def onnx_opset(path: Path) -> int:
    """The default-domain (ai.onnx) opset an ONNX file is stamped with: what its runtime must know."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def write_cpu_model(
    repo: Path,
    contract: ModelContract,
    serving: TritonModelSettings,
    runtime: PythonRuntime,
    onnx_path: Path,
    int8_path: Path | None,
    dim: int,
    onnxruntime_version: str,
    target: Target = "cpu",
) -> Path:
    """The python-backend model (CPU target, or CUDA with `runtime` torch_cuda_fp16); an ONNX
    runtime's config records the served graph's opset and the onnxruntime the build checked it
    with, which the model checks when Triton loads it."""
    model_dir = repo / contract.name
    version = model_dir / "1"
    version.mkdir(parents=True)
    copy_model_code(contract, version)
    served = None
    if runtime == "onnx_int8":
        assert int8_path is not None
        served = shutil.copy2(int8_path, version / "model.int8.onnx")
    elif runtime == "onnx_fp32":
        served = shutil.copy2(onnx_path, version / "model.onnx")
    recorded = {"onnx_opset": onnx_opset(Path(served)), "onnxruntime_version": onnxruntime_version} if served else {}
    config = render_config(
        contract, target, serving, runtime=runtime, dim=dim, **{"onnx_opset": "", "onnxruntime_version": "", **recorded}
    )
    (model_dir / "config.pbtxt").write_text(config)
    return version


def copy_model_code(contract: ModelContract, version: Path) -> None:
    """The model's own model.py and the shared cpu_runtime.py, side by side as the python backend loads them."""
    shutil.copy2(templates_dir() / contract.name / "model.py", version / "model.py")
    shutil.copy2(templates_dir() / "common" / "cpu_runtime.py", version / "cpu_runtime.py")


def load_cpu_model(version: Path, contract: ModelContract, runtime: PythonRuntime) -> Any:
    """The `cpu_runtime.CpuModel` of a CPU model version directory, initialised as Triton's python
    backend does it, but in this process: benchmarks and tests run the served code."""
    spec = importlib.util.spec_from_file_location(f"{contract.name}_model", version / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = {
        "input": [{"name": name} for name in contract.inputs],
        "output": [{"name": contract.output}],
        "parameters": {"runtime": {"string_value": runtime}},
    }
    model = module.TritonPythonModel()
    args = {"model_config": json.dumps(config), "model_repository": str(version.parent), "model_version": version.name}
    model.initialize(args)
    return model.model


def write_tensorrt_model(
    repo: Path, contract: ModelContract, serving: TritonModelSettings, plan: Path, dim: int
) -> Path:
    model_dir = repo / contract.name
    (model_dir / "1").mkdir(parents=True)
    shutil.copy2(plan, model_dir / "1" / "model.plan")
    (model_dir / "config.pbtxt").write_text(render_config(contract, "tensorrt", serving, dim=dim))
    return model_dir
