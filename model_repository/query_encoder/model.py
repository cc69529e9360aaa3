"""Triton python backend, `query_encoder`: the mean-pooled, L2-normalised embedding of each
query, [batch, dim] (the computation of ranking_build.models.SentenceEncoder).

The build copies cpu_runtime.py beside this file; it does the batching and the runtimes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_runtime import BatchingPythonModel  # noqa: E402


class TritonPythonModel(BatchingPythonModel):
    @staticmethod
    def load_torch(hf_dir: Path):
        from transformers import AutoModel

        return AutoModel.from_pretrained(str(hf_dir)).eval()

    @staticmethod
    def forward(model, tensors: dict):
        import torch

        hidden = model(**tensors).last_hidden_state.float()
        mask = tensors["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)
