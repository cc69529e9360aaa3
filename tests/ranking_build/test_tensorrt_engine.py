"""The TensorRT path: runs only where the TensorRT builder works (a GPU machine with `tensorrt`)."""

from pathlib import Path

import pytest

from ranking_build.tensorrt_engine import EngineProfile, build_engine, tensorrt_unavailable_reason
from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.contract import ENCODER

REASON = tensorrt_unavailable_reason()
pytestmark = [pytest.mark.tensorrt, pytest.mark.skipif(REASON is not None, reason=f"TensorRT build not run: {REASON}")]


def test_encoder_engine_builds_with_dynamic_profile(artifacts: ArtifactPaths, tmp_path: Path) -> None:
    import tensorrt as trt

    plan = build_engine(
        artifacts.onnx_dir / f"{ENCODER.name}.onnx",
        tmp_path / "model.plan",
        ENCODER.inputs,
        EngineProfile(max_batch=32, opt_batch=8, max_length=64, opt_length=32),
    )
    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(plan.read_bytes())
    names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
    assert names == {*ENCODER.inputs, ENCODER.output}
