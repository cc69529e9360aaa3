"""The TensorRT target. What needs no GPU runs everywhere (the fp16 graph, the profile's widths,
the version refusal, the real check inputs); building and checking an engine runs only where the
TensorRT builder works (a GPU machine with the `tensorrt` extra)."""

from pathlib import Path

import numpy as np
import pytest

from ranking_build.pipeline import CheckInputs
from ranking_build.tensorrt_engine import (
    TENSORRT_VERSION,
    EngineProfile,
    build_engine,
    check_engine,
    padded_width,
    tensorrt_unavailable_reason,
    to_fp16,
    version_mismatch,
)
from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.contract import ENCODER, RERANKER
from ranking_gateway.serving.tokenization import BUCKET, TextTokenizer

REASON = tensorrt_unavailable_reason()
needs_tensorrt = pytest.mark.skipif(REASON is not None, reason=f"TensorRT build not run: {REASON}")


def test_the_profile_covers_every_width_the_gateway_sends(artifacts: ArtifactPaths) -> None:
    """Truncated at 100 tokens, a pair is padded to 128: a profile ending at 100 would refuse it."""
    assert [padded_width(n) for n in (1, 32, 33, 100, 128, 384, 500)] == [32, 32, 64, 128, 128, 384, 512]
    lo, opt, hi = EngineProfile(max_batch=64, opt_batch=32, max_length=100, opt_length=128).shapes()
    assert (lo, opt, hi) == ((1, 1), (32, 128), (64, 128))
    tokenizer = TextTokenizer(artifacts.tokenizer(RERANKER.name), 100)
    widest = tokenizer.encode_pairs("a question " * 40, ["a long document " * 200]).input_ids.shape[1]
    assert widest == 128 == hi[1]


def test_plans_for_another_tensorrt_are_refused_before_building() -> None:
    assert version_mismatch(f"{TENSORRT_VERSION}.0.18") is None
    message = version_mismatch("11.0.0.1")
    assert message and "24.10" in message and TENSORRT_VERSION in message and "[tensorrt]" in message


@pytest.mark.parametrize(("contract", "query"), [(ENCODER, None), (RERANKER, "why do volcanoes erupt")])
def test_the_fp16_graph_keeps_its_inputs_and_outputs_and_nearly_its_values(
    artifacts: ArtifactPaths, tmp_path: Path, contract, query: str | None
) -> None:
    """What the strongly typed engine is built from: same tensor names and types as the fp32
    graph (the Triton config does not change), values within fp16 rounding."""
    import onnx
    import onnxruntime as ort
    source = artifacts.onnx_dir / f"{contract.name}.onnx"
    half = to_fp16(source, tmp_path / "half.onnx")
    types = {i.name: i.type.tensor_type.elem_type for i in onnx.load(str(half)).graph.input}
    assert types == {name: onnx.TensorProto.INT64 for name in contract.inputs}
    check = CheckInputs(["volcanoes erupt when magma rises", "bread rises with yeast", "stars are suns"], query)
    feeds = check.feeds(artifacts, contract, 64)
    assert all(array.shape[1] % BUCKET == 0 and array.dtype == np.int64 for array in feeds.values())
    run = lambda path: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        [contract.output], feeds)[0]
    full, reduced = run(source), run(half)
    assert reduced.dtype == np.float32 and reduced.shape == full.shape
    assert float(np.max(np.abs(reduced - full))) < 0.01


def test_cross_encoder_check_inputs_are_pairs(artifacts: ArtifactPaths) -> None:
    feeds = CheckInputs(["lava flows", "yeast bread"], query="what rises").feeds(artifacts, RERANKER, 128)
    assert set(feeds) == set(RERANKER.inputs)
    assert (feeds["token_type_ids"].max(axis=1) == 1).all()  # a second segment: the document


@pytest.mark.tensorrt
@needs_tensorrt
def test_encoder_engine_builds_and_matches_onnx_runtime(artifacts: ArtifactPaths, tmp_path: Path) -> None:
    import tensorrt as trt

    source = artifacts.onnx_dir / f"{ENCODER.name}.onnx"
    profile = EngineProfile(max_batch=32, opt_batch=8, max_length=64, opt_length=32)
    plan = build_engine(to_fp16(source, tmp_path / "half.onnx"), tmp_path / "model.plan", ENCODER.inputs, profile)
    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(plan.read_bytes())
    names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
    assert names == {*ENCODER.inputs, ENCODER.output}
    check = CheckInputs(["volcanoes erupt when magma rises", "bread rises with yeast"])
    assert check_engine(plan, source, check.feeds(artifacts, ENCODER, 64), ENCODER.output) < 0.05
