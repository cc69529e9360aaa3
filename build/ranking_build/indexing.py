"""Build the FAISS index over the corpus embeddings (exact inner product, or HNSW as an option)."""

from __future__ import annotations

import faiss
import numpy as np

from ranking_gateway.core.config import IndexType


def build_faiss_index(embeddings: np.ndarray, index_type: IndexType, hnsw_m: int = 32) -> faiss.Index:
    """Row i of `embeddings` becomes id i. Vectors are L2-normalised, so inner product = cosine."""
    dim = embeddings.shape[1]
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200
        index.hnsw.efSearch = 256
    else:
        raise ValueError(f"unknown index type {index_type!r}")
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index
