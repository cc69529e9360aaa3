"""Triton python backend, `reranker`: one relevance logit per (query, document) pair,
[batch, 1] (the computation of ranking_build.models.CrossEncoder).

The build copies cpu_runtime.py beside this file; it does the batching and the runtimes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_runtime import BatchingPythonModel  # noqa: E402


class TritonPythonModel(BatchingPythonModel):
    @staticmethod
    def load_torch(hf_dir: Path):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(str(hf_dir)).eval()

    @staticmethod
    def forward(model, tensors: dict):
        return model(**tensors).logits[:, :1]
