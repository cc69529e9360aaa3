"""The late-interaction reranker in PyTorch: the query side exported to Triton, the document
side run once by `build` into the token store.

Query side: a fine-tuned Transformer, a linear projection to `dim`, unit length per token,
zeros at padding. Document side: a *frozen* Transformer (all-MiniLM-L6-v2 by default, the
stack's own bi-encoder) and its own linear projection. Freezing it is what lets training run on
a 2-core CPU: the document Transformer's outputs are computed once and training only moves the
query encoder and the two projections (docs/reranker.md has the measurements).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ranking_gateway.core.artifacts import sha256_of
from ranking_gateway.core.errors import CliError
from ranking_gateway.core.reranker_dir import (
    BUILTIN_DOCUMENT_ENCODER,
    PROJECTIONS_FILE,
    LateInteractionConfig,
    read_late_interaction,
)


def token_vectors(hidden: torch.Tensor, attention_mask: torch.Tensor, projection: nn.Linear) -> torch.Tensor:
    """[batch, tokens, dim] unit vectors, zero where the mask is 0 (so MaxSim ignores padding)."""
    vectors = nn.functional.normalize(projection(hidden).float(), p=2.0, dim=-1)
    return vectors * attention_mask.unsqueeze(-1).to(vectors.dtype)


class TokenEncoder(nn.Module):
    """One side of the reranker: a Transformer, a projection, unit token vectors. The query side
    is the Triton model `query_token_encoder` (contract QUERY_TOKENS); the document side (a frozen
    Transformer) fills the token store at build time, and is served as `document_token_encoder`
    (DOCUMENT_TOKENS) for documents outside the corpus."""

    def __init__(self, transformer: nn.Module, projection: nn.Linear) -> None:
        super().__init__()
        self.transformer = transformer
        self.projection = projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return token_vectors(hidden, attention_mask, self.projection)


class HiddenStates(nn.Module):
    """A Transformer's raw token outputs (training keeps these for the frozen document side)."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def document_encoder_dir(reranker_dir: Path, config: LateInteractionConfig) -> Path:
    """Where the frozen document Transformer's weights are, checked against the recorded sha256
    (the token store is only right with the exact weights the projection was trained on)."""
    from ranking_build.models import default_encoder_path

    if config.document_encoder == BUILTIN_DOCUMENT_ENCODER:
        path = default_encoder_path()
    else:
        path = (reranker_dir / config.document_encoder).resolve()
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise CliError(f"{reranker_dir}: document encoder {config.document_encoder} has no model.safetensors at {path}")
    if config.document_encoder_sha256 and sha256_of(weights) != config.document_encoder_sha256:
        raise CliError(
            f"{reranker_dir}: the document encoder at {path} is not the one this reranker was trained with "
            "(sha256 differs); install the recorded version or retrain"
        )
    return path


def _projections(reranker_dir: Path, config: LateInteractionConfig) -> tuple[nn.Linear, nn.Linear]:
    from safetensors.torch import load_file

    weights = load_file(str(reranker_dir / PROJECTIONS_FILE))
    out = []
    for side in ("query", "document"):
        w = weights[side].float()
        if w.shape[0] != config.dim:
            raise CliError(f"{reranker_dir}: {side} projection is {tuple(w.shape)}, config says dim {config.dim}")
        layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
        layer.weight.data.copy_(w)
        out.append(layer)
    return out[0], out[1]


def load_query_side(reranker_dir: Path) -> tuple[LateInteractionConfig, TokenEncoder]:
    """The query side alone, fp32, in eval mode: all that `learn` retrains (the document side
    is already in the build's token store)."""
    from transformers import AutoModel

    config = read_late_interaction(reranker_dir)
    query_projection, _ = _projections(reranker_dir, config)
    query = TokenEncoder(AutoModel.from_pretrained(str(reranker_dir), dtype=torch.float32), query_projection)
    return config, query.eval()


def load_late_interaction(reranker_dir: Path) -> tuple[LateInteractionConfig, TokenEncoder, TokenEncoder]:
    """Both sides of the reranker in `reranker_dir`, fp32, in eval mode."""
    from transformers import AutoModel

    config, query = load_query_side(reranker_dir)
    _, document_projection = _projections(reranker_dir, config)
    doc_dir = document_encoder_dir(reranker_dir, config)
    document = TokenEncoder(AutoModel.from_pretrained(str(doc_dir), dtype=torch.float32), document_projection)
    return config, query.eval(), document.eval()


def encode_document_tokens(
    encoder: nn.Module,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 16,
    progress: str | None = None,
) -> list[np.ndarray]:
    """Each text's token outputs of `encoder` ((input_ids, attention_mask) -> [batch, tokens, dim]:
    the document `TokenEncoder`, or `HiddenStates` in training) as float16 [tokens, dim], padding
    dropped, in input order. Sorted by length inside, so batches waste little padding."""
    from tqdm import tqdm

    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([-len(ids) for ids in encoded], kind="stable")
    out: list[np.ndarray] = [np.empty(0)] * len(texts)
    for start in tqdm(range(0, len(order), batch_size), desc=progress, disable=progress is None, unit="batch"):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.zeros((len(idx), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, i in enumerate(idx):
            ids[j, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[j, : len(encoded[i])] = 1
        with torch.inference_mode():
            vectors = encoder(ids, mask).numpy()
        for j, i in enumerate(idx):
            out[i] = vectors[j, : len(encoded[i])].astype(np.float16)
    return out
