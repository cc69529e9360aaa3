"""Triton python backend, `query_token_encoder`: the late-interaction reranker's query side,
[batch, tokens, dim] unit token vectors, zero at padding (the computation of
ranking_build.late_interaction.TokenEncoder, query side). The gateway scores them by MaxSim against
the document token store that `build` wrote.

The build copies cpu_runtime.py beside this file; it does the batching and the runtimes. Torch
runtimes find the query projection beside the Hugging Face weights (`hf/projection.npy`).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_runtime import BatchingPythonModel  # noqa: E402


class TritonPythonModel(BatchingPythonModel):
    @staticmethod
    def load_torch(hf_dir: Path):
        import numpy as np
        import torch
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(hf_dir)).eval()
        model.token_projection = torch.from_numpy(np.load(hf_dir / "projection.npy")).float()
        return model

    @staticmethod
    def forward(model, tensors: dict):
        import torch

        hidden = model(**tensors).last_hidden_state.float()
        vectors = torch.nn.functional.normalize(hidden @ model.token_projection.T, p=2.0, dim=-1)
        return vectors * tensors["attention_mask"].unsqueeze(-1).to(vectors.dtype)
