"""Export the encoder and the reranker to ONNX (dynamic batch and sequence axes) and check them.

The check runs the same random-length batch through PyTorch (fp32) and ONNX Runtime and
reports the max absolute difference, so a broken export fails the build instead of serving.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ranking_gateway.core.contract import ModelContract
from ranking_gateway.core.errors import CliError

log = logging.getLogger(__name__)

OPSET = 17
MAX_ABS_DIFF = 1e-3


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_diff: float
    engine: dict | None = None  # the TensorRT target's EngineInfo, as the manifest records it


def _sample_inputs(input_names: tuple[str, ...], vocab_size: int, batch: int = 3, length: int = 17) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab_size, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, length // 2 :] = 0  # one padded row, so masking is exercised
    inputs = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in input_names:
        types = torch.zeros(batch, length, dtype=torch.long)
        types[:, length // 3 :] = 1
        inputs["token_type_ids"] = types
    return inputs


def export_onnx(module: torch.nn.Module, contract: ModelContract, path: Path) -> ExportResult:
    """Trace `module` to ONNX at `path`, with the contract's tensor names, and verify it against PyTorch.
    The TorchScript exporter (`dynamo=False`): it needs no onnxscript and handles these models."""
    input_names, output_name = contract.inputs, contract.output
    module = module.float().eval()
    vocab = int(module.transformer.config.vocab_size)
    inputs = _sample_inputs(input_names, vocab)
    args = tuple(inputs[name] for name in input_names)
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    dynamic_axes[output_name] = {0: "batch", 1: "sequence"} if contract.per_token else {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(input_names),
            output_names=[output_name],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )
    diff = check_onnx(module, path, input_names, vocab)
    log.info("exported %s: max |onnx - torch| = %.2e", path.name, diff)
    print(f"ONNX check {path.name}: max abs difference vs PyTorch = {diff:.3e}")
    if not diff < MAX_ABS_DIFF:
        raise CliError(f"{path.name}: ONNX output differs from PyTorch by {diff:.3e} (> {MAX_ABS_DIFF})")
    return ExportResult(path=path, max_abs_diff=diff)


def check_onnx(module: torch.nn.Module, path: Path, input_names: tuple[str, ...], vocab: int) -> float:
    """Max abs difference between PyTorch and ONNX Runtime on a batch of another shape than the trace."""
    import onnxruntime as ort

    inputs = _sample_inputs(input_names, vocab, batch=5, length=29)
    with torch.inference_mode():
        expected = module(*(inputs[name] for name in input_names)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: inputs[name].numpy() for name in input_names})[0]
    return float(np.max(np.abs(got - expected)))


def check_against_onnx(
    what: str, got: np.ndarray, reference_onnx: Path, feeds: dict[str, np.ndarray], output: str, bound: float
) -> float:
    """Max abs difference of a compiled model's output `got` from ONNX Runtime on the fp32 graph,
    for the same real inputs; a `CliError` past `bound`: a wrong model must not reach Triton."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(reference_onnx), providers=["CPUExecutionProvider"])
    expected = session.run([output], feeds)[0]
    diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
    print(f"{what}: vs ONNX Runtime on {len(next(iter(feeds.values())))} real inputs, max abs diff {diff:.4g}")
    if not diff <= bound:
        raise CliError(f"{what} differs from ONNX Runtime by {diff:.4g} on {output!r} (more than {bound}): not written")
    return diff


def quantize_int8(onnx_path: Path, out_path: Path) -> Path:
    """Dynamic int8 quantisation (weights int8, activations quantised at run time): uses VNNI/AMX."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantiser logs one INFO line per tensor on the root logger
    try:
        quantize_dynamic(str(onnx_path), str(out_path), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return out_path
