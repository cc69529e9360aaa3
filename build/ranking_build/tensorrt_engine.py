"""Compile an ONNX model into a TensorRT FP16 engine (`model.plan`) for the `tensorrt_plan` target.

Written against the TensorRT 10 Python API. The optimisation profile spans batch sizes
1..max_batch and sequence lengths 1..max_length, with the optimum at the serving shapes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ranking_gateway.core.errors import CliError

log = logging.getLogger(__name__)


def tensorrt_unavailable_reason() -> str | None:
    """None when the TensorRT builder can be used here, else why not (for skips and errors)."""
    try:
        import tensorrt as trt
    except Exception as exc:  # the PyPI stubs raise odd errors when their download fails
        return f"the TensorRT Python API does not import here ({type(exc).__name__}: {exc})"
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as exc:
        return f"TensorRT imports but cannot create a builder ({exc}); is there a GPU?"
    if builder is None:
        return "TensorRT cannot create a builder (no CUDA device?)"
    return None


@dataclass(frozen=True)
class EngineProfile:
    max_batch: int
    opt_batch: int
    max_length: int
    opt_length: int


def build_engine(onnx_path: Path, plan_path: Path, input_names: tuple[str, ...], profile: EngineProfile) -> Path:
    reason = tensorrt_unavailable_reason()
    if reason:
        raise CliError(f"--target tensorrt: {reason}")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CliError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    if builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    opt = builder.create_optimization_profile()
    for name in input_names:
        opt.set_shape(
            name,
            min=(1, 1),
            opt=(profile.opt_batch, profile.opt_length),
            max=(profile.max_batch, profile.max_length),
        )
    config.add_optimization_profile(opt)
    log.info("building TensorRT engine for %s (this takes minutes)", onnx_path.name)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CliError(f"TensorRT failed to build an engine for {onnx_path}")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    return plan_path
