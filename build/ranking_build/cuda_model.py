"""The CUDA target: the CPU target's python-backend models on `KIND_GPU` instances, PyTorch fp16
(`torch_cuda_fp16` in cpu_runtime.py), for GPUs where TensorRT is not installed.

The build writes the Hugging Face weights and the config; where this machine has a GPU it also
loads the served model exactly as Triton will (its model.py and runtime) and checks its outputs
against ONNX Runtime on the fp32 graph, as the TensorRT target checks its engines. A build on a
machine without a GPU says so in the manifest (`checked: false`) instead of pretending.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ranking_build.model_repository import load_cpu_model
from ranking_build.onnx_export import check_against_onnx
from ranking_gateway.core.contract import ModelContract

RUNTIME = "torch_cuda_fp16"
MAX_ABS_DIFF = 0.05  # fp16 on the GPU vs fp32 ONNX Runtime on real inputs, the TensorRT target's bound


def cuda_unavailable_reason() -> str | None:
    """None where torch can run on a CUDA GPU here, else why not (for skips and the manifest)."""
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU (CUDA build: {torch.version.cuda or 'no'})"
    return None


def check_cuda_model(
    version: Path, contract: ModelContract, reference_onnx: Path, feeds: dict[str, np.ndarray] | None
) -> dict:
    """What the manifest records of a CUDA model: runtime, precision, torch and CUDA versions, and
    where a GPU is here, the GPU and the served model's max abs difference from ONNX Runtime."""
    import torch

    record: dict = {"runtime": RUNTIME, "precision": "fp16", "torch": str(torch.__version__), "cuda": torch.version.cuda}
    reason = cuda_unavailable_reason()
    if reason is not None or feeds is None:
        print(f"{contract.name}: CUDA model written, not checked here ({reason or 'no check inputs'})")
        return {**record, "checked": False, "why_not_checked": reason or "no check inputs"}
    model = load_cpu_model(version, contract, RUNTIME)
    diff = check_against_onnx(f"{contract.name} (CUDA fp16)", model.run(feeds), reference_onnx, feeds,
                              contract.output, MAX_ABS_DIFF)
    return {**record, "checked": True, "gpu": torch.cuda.get_device_name(0), "max_abs_diff": diff}
