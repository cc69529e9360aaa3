"""Compile an ONNX model into a TensorRT engine (`model.plan`) for the `tensorrt_plan` target,
and check what it computes.

Written against the TensorRT 10 API as it stays in 11: the network is *strongly typed*, so the
precision is the ONNX graph's own (the build converts the graph to fp16 first, inputs and outputs
kept as they are), not builder flags: `BuilderFlag.FP16` and `platform_has_fast_fp16` are
deprecated in 10 and gone in 11, and silently built fp32 where fp16 was missing.

A plan loads only in the TensorRT it was built with. The target is the Triton image compose
runs (`nvcr.io/nvidia/tritonserver:24.10-py3`, TensorRT 10.5), so the `tensorrt` extra pins that
version and any other one is refused here, before minutes of building, rather than by Triton.
The optimisation profile covers every width the gateway sends: its tokenizers pad to multiples of
`BUCKET`, so a `--max-length` that is not one pads past itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ranking_build.onnx_export import check_against_onnx
from ranking_gateway.core.errors import CliError
from ranking_gateway.serving.tokenization import BUCKET

log = logging.getLogger(__name__)

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
TENSORRT_VERSION = "10.5"  # major.minor of the TensorRT in TRITON_IMAGE; the `tensorrt` extra pins it
# the server version of TRITON_IMAGE (what its metadata reports): the manifest records it, and the
# gateway refuses to serve the plans from a Triton of another release (serving.compatibility)
TRITON_SERVER_VERSION = "2.51.0"
MAX_ABS_DIFF = 0.05  # fp16 engine vs fp32 ONNX Runtime on real inputs; past it the build stops


def tensorrt_unavailable_reason() -> str | None:
    """None when the TensorRT builder can be used here, else why not (for skips and errors)."""
    try:
        import tensorrt as trt
    except Exception as exc:  # the PyPI stubs raise odd errors when their download fails
        return f"the TensorRT Python API does not import here ({type(exc).__name__}: {exc})"
    if mismatch := version_mismatch(trt.__version__):
        return mismatch
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as exc:
        return f"TensorRT imports but cannot create a builder ({exc}); is there a GPU?"
    if builder is None:
        return "TensorRT cannot create a builder (no CUDA device?)"
    return None


def version_mismatch(installed: str) -> str | None:
    """Why plans built with TensorRT `installed` would not load in the Triton image, or None."""
    if ".".join(installed.split(".")[:2]) == TENSORRT_VERSION:
        return None
    return (
        f"TensorRT {installed} is installed, but {TRITON_IMAGE} loads plans of TensorRT {TENSORRT_VERSION} "
        "only: pip install -e '.[tensorrt]'"
    )


def padded_width(max_length: int) -> int:
    """The widest input the gateway sends for a model truncating at `max_length` tokens."""
    return -(-max_length // BUCKET) * BUCKET


@dataclass(frozen=True)
class EngineProfile:
    """Batch sizes 1..max_batch and widths 1..the padded `max_length`, tuned for the opt shapes."""

    max_batch: int
    opt_batch: int
    max_length: int
    opt_length: int

    def shapes(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """(min, opt, max) of every [batch, tokens] input."""
        width = padded_width(self.max_length)
        return (1, 1), (self.opt_batch, min(self.opt_length, width)), (self.max_batch, width)


@dataclass(frozen=True)
class EngineInfo:
    """What the manifest records of a built engine."""

    tensorrt_version: str
    precision: str  # of the ONNX graph it was built from: strongly typed, it keeps it
    gpu: str
    max_width: int
    max_abs_diff: float  # against ONNX Runtime fp32 on real inputs


def build_engine(onnx_path: Path, plan_path: Path, input_names: tuple[str, ...], profile: EngineProfile) -> Path:
    reason = tensorrt_unavailable_reason()
    if reason:
        raise CliError(f"--target tensorrt: {reason}")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CliError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    shapes = profile.shapes()
    opt = builder.create_optimization_profile()
    for name in input_names:
        opt.set_shape(name, min=shapes[0], opt=shapes[1], max=shapes[2])
    config.add_optimization_profile(opt)
    log.info("building TensorRT engine for %s (this takes minutes)", onnx_path.name)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CliError(f"TensorRT failed to build an engine for {onnx_path}")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    return plan_path


def to_fp16(onnx_path: Path, out_path: Path) -> Path:
    """The graph's weights and arithmetic in fp16, its int64 token inputs and fp32 output kept
    (so the Triton config and the gateway are the same as for the CPU target)."""
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    # the converter retypes every float tensor but leaves `Cast(to=FLOAT)` nodes inside the graph
    # as they were (the masks cast for pooling), which no runtime then accepts: they cast to fp16
    # now, all but the cast back to the fp32 output
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "Cast" and not outputs.intersection(node.output):
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                    attribute.i = onnx.TensorProto.FLOAT16
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return out_path


def run_engine(plan: bytes, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
    """The engine's output for `feeds`, on the GPU (buffers held by torch, which the build has)."""
    import tensorrt as trt
    import torch

    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    tensors = {name: torch.from_numpy(np.ascontiguousarray(array)).cuda() for name, array in feeds.items()}
    for name, tensor in tensors.items():
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    result = torch.empty(tuple(context.get_tensor_shape(output)), dtype=torch.float32, device="cuda")
    context.set_tensor_address(output, result.data_ptr())
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise CliError("TensorRT could not run the engine it built")
    stream.synchronize()
    return result.cpu().numpy()


def check_engine(plan_path: Path, reference_onnx: Path, feeds: dict[str, np.ndarray], output: str) -> float:
    """Max abs difference between the engine and ONNX Runtime (the fp32 graph) on real inputs;
    a `CliError` past `MAX_ABS_DIFF`: a wrong engine must not reach Triton."""
    got = run_engine(plan_path.read_bytes(), feeds, output)
    return check_against_onnx(f"the TensorRT engine {plan_path.name}", got, reference_onnx, feeds, output, MAX_ABS_DIFF)


def engine_info(profile: EngineProfile, max_abs_diff: float) -> EngineInfo:
    import tensorrt as trt
    import torch

    return EngineInfo(
        tensorrt_version=trt.__version__,
        precision="fp16",
        gpu=torch.cuda.get_device_name(0),
        max_width=profile.shapes()[2][1],
        max_abs_diff=max_abs_diff,
    )
