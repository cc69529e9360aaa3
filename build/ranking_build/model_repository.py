"""Write the Triton model repository from the templates in the project's `model_repository/`.

CPU target: python-backend models (cpu_runtime.py + model.py); ONNX runtimes get their ONNX
file, torch runtimes get Hugging Face weights in `1/hf`. TensorRT target: `model.plan` with a
`tensorrt_plan` config. Both use the same model and tensor names, so the gateway does not know
which one it talks to.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from string import Template

from ranking_gateway.core.config import CpuRuntime, Target, TritonModelSettings


def templates_dir() -> Path:
    """The templates: packaged with the wheel, or the repository folder in a source checkout."""
    packaged = Path(__file__).resolve().parent / "model_repository_templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "model_repository"


def render_config(model_name: str, target: Target, serving: TritonModelSettings, **values: object) -> str:
    name = "config.tensorrt.pbtxt" if target == "tensorrt" else "config.pbtxt"
    template = Template((templates_dir() / model_name / name).read_text())
    return template.substitute(
        max_batch_size=serving.max_batch_size,
        preferred_batch_sizes=", ".join(str(s) for s in serving.preferred_batch_sizes),
        queue_delay_us=serving.queue_delay_us,
        instances=serving.instances,
        threads=serving.threads,
        **values,
    )


def write_cpu_model(
    repo: Path,
    model_name: str,
    serving: TritonModelSettings,
    runtime: CpuRuntime,
    onnx_path: Path,
    int8_path: Path | None,
    dim: int,
) -> Path:
    model_dir = repo / model_name
    version = model_dir / "1"
    version.mkdir(parents=True)
    for name in ("model.py", "cpu_runtime.py"):
        shutil.copy2(templates_dir() / "common" / name, version / name)
    if runtime == "onnx_int8":
        assert int8_path is not None
        shutil.copy2(int8_path, version / "model.int8.onnx")
    elif runtime == "onnx_fp32":
        shutil.copy2(onnx_path, version / "model.onnx")
    (model_dir / "config.pbtxt").write_text(render_config(model_name, "cpu", serving, runtime=runtime, dim=dim))
    return version


def write_tensorrt_model(repo: Path, model_name: str, serving: TritonModelSettings, plan: Path, dim: int) -> Path:
    model_dir = repo / model_name
    (model_dir / "1").mkdir(parents=True)
    shutil.copy2(plan, model_dir / "1" / "model.plan")
    (model_dir / "config.pbtxt").write_text(render_config(model_name, "tensorrt", serving, dim=dim))
    return model_dir
