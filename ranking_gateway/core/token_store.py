"""The late-interaction reranker's document side: every document's token vectors, computed by
`build`, scored against a query's token vectors by MaxSim at search time.

Why a store: a cross-encoder reads each (query, document) pair through the whole Transformer
at search time (seconds per query on a CPU). Late interaction (ColBERT) runs the Transformer
over the documents once, at build time, and keeps one small vector per document token; a
search then costs one short query encoding on Triton and a matrix product here.

Layout (one directory, numpy files, memory-mapped at serve time):
- `vectors.npy`  int8 [tokens, dim]: each token vector (unit length) scaled to ±127
- `scales.npy`   float16 [tokens]: the per-token factor that undoes the scaling
- `offsets.npy`  int64 [documents + 1]: document i owns rows offsets[i]:offsets[i+1]

int8 with a per-token scale is a quarter of fp32 and changes a cosine by about 1e-3
(`tests/core/test_token_store.py` bounds it). No torch, no HTTP: the gateway, offline
evaluation and the build share this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ranking_gateway.core.artifacts import sha256_of
from ranking_gateway.core.errors import CliError

VECTORS, SCALES, OFFSETS = "vectors.npy", "scales.npy", "offsets.npy"
FILES = (VECTORS, SCALES, OFFSETS)


class TokenStoreError(CliError):
    """The store is missing, corrupt or not the one the manifest describes: rebuild."""


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [n, dim] -> (int8 [n, dim], float16 scale [n]) with vectors ≈ int8 * scale."""
    vectors = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(vectors).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float16)
    q = np.clip(np.rint(vectors / scale[:, None].astype(np.float32)), -127, 127).astype(np.int8)
    return q, scale


def write_token_store(directory: Path, documents: Iterable[np.ndarray], dim: int) -> dict[str, int]:
    """Write the store from each document's float token vectors [n_i, dim], in row order.
    Returns its counts (documents, tokens, bytes) for the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    vectors, scales, lengths = [], [], [0]
    for doc in documents:
        if doc.ndim != 2 or doc.shape[1] != dim or doc.shape[0] == 0:
            raise ValueError(f"document token vectors must be [n > 0, {dim}], got {doc.shape}")
        q, s = quantize(doc)
        vectors.append(q)
        scales.append(s)
        lengths.append(doc.shape[0])
    offsets = np.cumsum(np.asarray(lengths, dtype=np.int64))
    np.save(directory / VECTORS, np.concatenate(vectors) if vectors else np.zeros((0, dim), np.int8))
    np.save(directory / SCALES, np.concatenate(scales) if scales else np.zeros(0, np.float16))
    np.save(directory / OFFSETS, offsets)
    size = sum((directory / f).stat().st_size for f in FILES)
    return {"documents": len(lengths) - 1, "tokens": int(offsets[-1]), "bytes": int(size)}


def store_sha256(directory: Path) -> str:
    return sha256_of(directory)


@dataclass(frozen=True)
class TokenStore:
    vectors: np.ndarray  # int8 [tokens, dim], memory-mapped
    scales: np.ndarray  # float32 [tokens]
    offsets: np.ndarray  # int64 [documents + 1]

    @property
    def documents(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def open(cls, directory: Path, *, documents: int, dim: int, sha256: str | None = None) -> "TokenStore":
        """The store in `directory`, checked against what the manifest says it holds (and its
        hash, when given): a `TokenStoreError` naming the problem instead of a wrong answer later."""
        rebuild = "rebuild the artifacts with `ranking-gateway build`"
        missing = [f for f in FILES if not (directory / f).is_file()]
        if missing:
            raise TokenStoreError(f"token store {directory}: {', '.join(missing)} missing; {rebuild}")
        if sha256 is not None and store_sha256(directory) != sha256:
            raise TokenStoreError(f"token store {directory}: contents differ from the manifest's sha256 (corrupt or replaced); {rebuild}")
        try:
            vectors = np.load(directory / VECTORS, mmap_mode="r")
            scales = np.load(directory / SCALES).astype(np.float32)
            offsets = np.load(directory / OFFSETS)
        except (OSError, ValueError) as exc:
            raise TokenStoreError(f"token store {directory}: unreadable ({exc}); {rebuild}") from None
        problems = []
        if vectors.dtype != np.int8 or vectors.ndim != 2 or vectors.shape[1] != dim:
            problems.append(f"vectors are {vectors.dtype} {vectors.shape}, expected int8 [*, {dim}]")
        if offsets.shape != (documents + 1,):
            problems.append(f"{offsets.shape[0] - 1} documents, the manifest says {documents}")
        elif offsets[0] != 0 or offsets[-1] != vectors.shape[0] or np.any(np.diff(offsets) <= 0):
            problems.append("offsets do not partition the vectors")
        if scales.shape != (vectors.shape[0],):
            problems.append("one scale per token vector expected")
        if problems:
            raise TokenStoreError(f"token store {directory}: {'; '.join(problems)}; {rebuild}")
        return cls(vectors, scales, offsets)

    def document(self, row: int) -> np.ndarray:
        """Document `row`'s token vectors as float32 [n, dim]."""
        start, stop = self.offsets[row], self.offsets[row + 1]
        return self.vectors[start:stop].astype(np.float32) * self.scales[start:stop, None]

    def maxsim(self, query: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        """ColBERT's score of each document row: sum over query tokens of the best cosine with
        any of the document's tokens. `query` is [q_tokens, dim] (padding rows all zero add 0)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros(0, dtype=np.float32)
        starts, stops = self.offsets[rows], self.offsets[rows + 1]
        take = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])
        docs = self.vectors[take].astype(np.float32) * self.scales[take, None]
        return maxsim(query, docs, stops - starts)


def maxsim(query: np.ndarray, documents: np.ndarray, lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """The MaxSim score of consecutive documents: `documents` is their token vectors stacked
    [sum(lengths), dim], document i owning the next `lengths[i]` (> 0) rows, padding left out
    (a zero row would be a best match of 0). One function for the token store and for vectors
    Triton computed at request time (`POST /v1/rerank`), so both score alike."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0:
        return np.zeros(0, dtype=np.float32)
    sims = np.asarray(query, dtype=np.float32) @ np.asarray(documents, dtype=np.float32).T  # [q_tokens, doc tokens]
    bounds = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    best = np.maximum.reduceat(sims, bounds, axis=1)  # [q_tokens, documents]
    return best.sum(axis=0)
