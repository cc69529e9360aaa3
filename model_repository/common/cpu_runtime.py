"""Inference for the Triton python backend, shared by every model of the repository: the CPU
target's runtimes, and the CUDA target's (`torch_cuda_fp16`: PyTorch fp16 on the instance's GPU,
for GPUs where TensorRT is not installed).

The build step copies this file next to each model's `model.py`, which says what the model
computes. It must stay self-contained (no `ranking_gateway` import) so the model repository
also runs in a plain Triton container that only has torch/transformers/onnxruntime installed.
Tensor names come from the model's config.pbtxt, which the build writes from the contract
(ranking_gateway/core/contract.py).

Requests queued by Triton's dynamic batcher arrive together in one `execute` call; they may
have different sequence lengths, so we pad them to the longest, run one forward pass for the
whole batch and split the outputs back per request.
"""

from __future__ import annotations

import gc
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RUNTIMES = ("torch_bf16", "torch_fp32", "onnx_fp32", "onnx_int8", "torch_cuda_fp16")

LoadTorch = Callable[[Path], Any]  # Hugging Face directory -> module in eval mode
TorchForward = Callable[[Any, dict], Any]  # (module, {input name: tensor}) -> output tensor


def _parameter(model_config: dict, key: str, default: str) -> str:
    value = model_config.get("parameters", {}).get(key, {}).get("string_value")
    return value if value else default


def threads_per_instance(model_config: dict) -> int:
    """The config's `threads`, or else all cores: a lone request then has every core (a model's
    two instances share them, without spinning, see `CpuModel`). Two one-thread instances served
    10-20 % more under load, but a lone query took 20-24 ms instead of 14-17 (README, "What
    Triton adds")."""
    return int(_parameter(model_config, "threads", "0")) or (os.cpu_count() or 1)


def instance_count(model_config: dict) -> int:
    """The model's instances in this Triton (1 where the config names none: one process, as in a bench)."""
    return sum(int(g.get("count", 1)) for g in model_config.get("instance_group", [])) or 1


def supported_onnx_opset(ort: Any) -> int | None:
    """The highest default-domain ONNX opset this onnxruntime knows: the newest of its operator
    schemas (what it states when it refuses a newer model); None where its build does not list them."""
    try:
        schemas = ort.capi._pybind_state.get_all_operator_schema()
    except Exception:
        return None
    versions = [s.since_version for s in schemas if s.domain in ("", "ai.onnx")]
    return max(versions) if versions else None


def check_onnxruntime(model_config: dict, ort: Any) -> None:
    """Raise, in one line, where this onnxruntime cannot run the graph the build exported (its
    config's `onnx_opset`) or is of another major version than the build's. Triton then marks the
    model unavailable with that reason, which the gateway quotes when it refuses to start."""
    opset = _parameter(model_config, "onnx_opset", "")
    built = _parameter(model_config, "onnxruntime_version", "")
    here = str(ort.__version__)
    fix = f"rebuild the artifacts (`ranking-gateway build`) where onnxruntime is {here}"
    if built and built != here:
        fix += f", or run Triton from an image with the build's onnxruntime {built}"
    if built and built.split(".")[0] != here.split(".")[0]:
        raise RuntimeError(f"built with onnxruntime {built}, but this Triton runs onnxruntime {here}: {fix}")
    supported = supported_onnx_opset(ort)
    if opset and supported is not None and int(opset) > supported:
        raise RuntimeError(
            f"the model is ONNX opset {opset}, but this Triton's onnxruntime {here} runs opsets up to {supported}: {fix}"
        )


def pad_and_stack(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack [batch_i, len_i] int64 arrays into one [sum batch_i, max len_i] array, zero padded."""
    width = max(a.shape[1] for a in arrays)
    out = np.zeros((sum(a.shape[0] for a in arrays), width), dtype=np.int64)
    row = 0
    for a in arrays:
        out[row : row + a.shape[0], : a.shape[1]] = a
        row += a.shape[0]
    return out


class CpuModel:
    """One model on one CPU runtime, `inputs -> output` on numpy arrays.

    ONNX runtimes run the exported graph, which already holds the model's whole computation;
    torch runtimes run the Hugging Face weights in `hf/` through the model's `forward`.
    """

    def __init__(
        self, version_dir: Path, model_config: dict, load_torch: LoadTorch, forward: TorchForward, device_id: int = 0
    ) -> None:
        self.runtime = _parameter(model_config, "runtime", "torch_bf16")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime parameter {self.runtime!r}; expected one of {RUNTIMES}")
        threads = threads_per_instance(model_config)
        self.input_names = [i["name"] for i in model_config["input"]]
        self.output_name = model_config["output"][0]["name"]
        if self.runtime.startswith("torch"):
            try:
                import torch
            except ImportError:
                raise RuntimeError(
                    f"the {self.runtime} runtime runs the model in torch, which this Triton's Python does not have: "
                    "rebuild the artifacts with --cpu-runtime onnx_int8 or onnx_fp32, or run Triton where torch is "
                    "installed (ranking-gateway[build,embedded])"
                ) from None

            torch.set_num_threads(threads)
            self._torch = torch
            self._device = torch.device("cpu")
            self._model = load_torch(version_dir / "hf")
            if self.runtime == "torch_cuda_fp16":
                self._device = cuda_device(torch, device_id)
                self._model = on_device(self._model, self._device, torch.float16)
            self._forward = forward
        else:
            import onnxruntime as ort

            check_onnxruntime(model_config, ort)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            if threads * instance_count(model_config) > (os.cpu_count() or 1):
                # the instances share cores: a pool spinning after its own run takes them from the
                # other instance's (2 instances x 2 threads on 2 cores: a lone query 33 ms, not 16)
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            path = version_dir / ("model.int8.onnx" if self.runtime == "onnx_int8" else "model.onnx")
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.warm_up()

    def warm_up(self) -> None:
        """Run the common shapes once, so the first user request does not pay for kernel selection."""
        for batch, length in ((1, 32), (16, 128)):
            fill = {"input_ids": 1000, "attention_mask": 1, "token_type_ids": 0}
            self.run({name: np.full((batch, length), fill[name], dtype=np.int64) for name in self.input_names})

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        if not self.runtime.startswith("torch"):
            feeds = {name: inputs[name] for name in self.input_names}
            return self._session.run([self.output_name], feeds)[0].astype(np.float32)
        torch = self._torch
        tensors = {name: torch.from_numpy(inputs[name]).to(self._device) for name in self.input_names}
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.runtime == "torch_bf16"):
            return self._forward(self._model, tensors).float().cpu().numpy()


def cuda_device(torch: Any, device_id: int) -> Any:
    """The GPU Triton placed this instance on (`KIND_GPU`), or a one-line reason why there is none."""
    if not torch.cuda.is_available():
        raise RuntimeError(
            "the torch_cuda_fp16 runtime (build --target cuda) runs on a CUDA GPU, and torch in this Triton sees "
            "none: rebuild the artifacts with --target cpu, or serve them where a GPU and a CUDA build of torch are"
        )
    if device_id >= torch.cuda.device_count():
        raise RuntimeError(f"Triton placed this instance on GPU {device_id}, but torch sees {torch.cuda.device_count()}")
    return torch.device(f"cuda:{device_id}")


def on_device(model: Any, device: Any, dtype: Any) -> Any:
    """`model` in `dtype` on `device`, with the plain tensors a model.py hangs on it (a late-
    interaction side's `token_projection`) moved too, kept in fp32 as its forward computes them."""
    import torch

    model = model.to(device=device, dtype=dtype)
    for name, value in list(vars(model).items()):
        if isinstance(value, torch.Tensor):
            setattr(model, name, value.to(device))
    return model


class BatchingPythonModel(ABC):
    """The `TritonPythonModel` body: merge the queued requests, one forward pass, split back.
    Each model's model.py subclasses it with what that model computes under torch."""

    @staticmethod
    @abstractmethod
    def load_torch(hf_dir: Path) -> Any:
        """The Hugging Face weights in `hf_dir` as a module in eval mode."""

    @staticmethod
    @abstractmethod
    def forward(model: Any, tensors: dict) -> Any:
        """The model's output tensor for {input name: int64 tensor}."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        device_id = int(args.get("model_instance_device_id") or 0)  # KIND_GPU: the instance's GPU
        self.model = CpuModel(version_dir, config, self.load_torch, self.forward, device_id)
        # Everything loaded so far (torch, transformers, the model) lives as long as the stub:
        # frozen, the garbage collector stops scanning it, and the interpreter's teardown when
        # Triton unloads the model skips it too. Unfrozen, that teardown took 1.32 CPU-s a stub
        # against 0.22 frozen (bench/stub_teardown.py) and slowed searches after a live swap.
        gc.collect()
        gc.freeze()

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        per_request = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.model.input_names}
            for r in requests
        ]
        merged = {name: pad_and_stack([p[name] for p in per_request]) for name in self.model.input_names}
        try:
            output = self.model.run(merged)
        except Exception as exc:  # answer every request with the error instead of crashing the stub
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, row = [], 0
        for p in per_request:
            n, width = p[self.model.input_names[0]].shape
            part = output[row : row + n]
            if part.ndim == 3:  # per-token output: back to this request's own width
                part = part[:, :width]
            tensor = pb_utils.Tensor(self.model.output_name, np.ascontiguousarray(part))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            row += n
        return responses


class TokenVectorsPythonModel(BatchingPythonModel):
    """A late-interaction side: a Transformer, a linear projection, unit token vectors, zero at
    padding (ranking_build.late_interaction.TokenEncoder). The query and the document encoders
    compute the same thing with their own weights; torch runtimes find the projection beside the
    Hugging Face weights (`hf/projection.npy`)."""

    @staticmethod
    def load_torch(hf_dir: Path) -> Any:
        import torch
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(hf_dir)).eval()
        model.token_projection = torch.from_numpy(np.load(hf_dir / "projection.npy")).float()
        return model

    @staticmethod
    def forward(model: Any, tensors: dict) -> Any:
        import torch

        hidden = model(**tensors).last_hidden_state.float()
        vectors = torch.nn.functional.normalize(hidden @ model.token_projection.T, p=2.0, dim=-1)
        return vectors * tensors["attention_mask"].unsqueeze(-1).to(vectors.dtype)
