"""The Triton models' names and tensors: what the build exports, the model repository declares
and the gateway's client sends and asks for.

One definition, so a rename cannot reach one side and not the other. Stdlib only: the gateway
imports it without the build's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelContract:
    """One Triton model: its INT64 token inputs (named as `TokenBatch` fields) and its one output."""

    name: str
    inputs: tuple[str, ...]
    output: str
    output_dtype: str = "FP32"  # Triton's data type name (config.pbtxt writes it as TYPE_FP32)
    input_dtype: str = "INT64"
    per_token: bool = False  # output [batch, tokens, dim] instead of [batch, dim]


# [batch, dim] mean-pooled, L2-normalised query embeddings
ENCODER = ModelContract("query_encoder", ("input_ids", "attention_mask"), "embedding")
# [batch, 1] relevance logit of each (query, document) pair
RERANKER = ModelContract("reranker", ("input_ids", "attention_mask", "token_type_ids"), "logit")
# [batch, tokens, dim] the late-interaction reranker's query token vectors, unit length, zero at
# padding (MaxSim against the build's document token store, ranking_gateway.core.token_store)
QUERY_TOKENS = ModelContract("query_token_encoder", ("input_ids", "attention_mask"), "token_vectors", per_token=True)
# [batch, tokens, dim] the late-interaction reranker's document token vectors, computed as `build`
# computes the token store (frozen document encoder + document projection), unit length, zero at
# padding: `POST /v1/rerank` scores documents that are not in the corpus with it
DOCUMENT_TOKENS = ModelContract(
    "document_token_encoder", ("input_ids", "attention_mask"), "token_vectors", per_token=True
)
