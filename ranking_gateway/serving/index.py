"""The loaded index: FAISS (and BM25, where the build made one) for candidates, the documents
for titles and snippets, the embeddings for personalisation (a profile is a centroid in the
same space)."""

from __future__ import annotations

import json

import faiss
import numpy as np

from ranking_gateway.core.corpus import Document
from ranking_gateway.core.artifacts import ArtifactPaths, Manifest
from ranking_gateway.core.config import RETRIEVAL_MODES, RetrievalMode
from ranking_gateway.core.fusion import rrf
from ranking_gateway.core.lexical import LexicalIndex


def resolve_retrieval(requested: str | None, has_lexical: bool) -> RetrievalMode:
    """The first stage to serve: `requested`, or hybrid where a BM25 index exists, else dense.
    ValueError (a one-line message) for an unknown mode or a BM25 mode without a BM25 index."""
    if requested is None:
        return "hybrid" if has_lexical else "dense"
    if requested not in RETRIEVAL_MODES:
        raise ValueError(f"unknown retrieval mode {requested!r}; choose from {', '.join(RETRIEVAL_MODES)}")
    if requested != "dense" and not has_lexical:
        raise ValueError(
            f"retrieval {requested!r} needs a BM25 index, and these artifacts have none "
            "(built before hybrid retrieval): rebuild them, or use dense"
        )
    return requested  # type: ignore[return-value]


def fuse(
    dense: tuple[np.ndarray, np.ndarray], lexical: tuple[np.ndarray, np.ndarray], n: int, rrf_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal rank fusion of the dense and BM25 (rows, scores), top n: (rows, fused scores).
    Dense first, so RRF ties keep dense's order."""
    fused = rrf([dense[0].tolist(), lexical[0].tolist()], k=rrf_k, limit=n)
    return np.array([r for r, _ in fused], dtype=np.int64), np.array([s for _, s in fused], dtype=np.float64)


class DocumentIndex:
    def __init__(self, paths: ArtifactPaths, manifest: Manifest | None = None) -> None:
        """`manifest` (read from `paths` when not given) says whether a BM25 index was built."""
        manifest = manifest if manifest is not None else Manifest.read(paths.root)
        self.faiss = faiss.read_index(str(paths.faiss_index))
        self.embeddings = np.load(paths.embeddings, mmap_mode="r")
        self.documents: list[Document] = []
        with paths.documents.open(encoding="utf-8") as fh:
            for line in fh:
                obj = json.loads(line)
                self.documents.append(Document(obj["_id"], obj.get("title", ""), obj["text"]))
        self.row_of: dict[str, int] = {d.id: i for i, d in enumerate(self.documents)}
        if self.faiss.ntotal != len(self.documents):
            raise ValueError(f"index has {self.faiss.ntotal} vectors but {len(self.documents)} documents")
        self.lexical: LexicalIndex | None = None
        if manifest.bm25 is not None:
            self.lexical = LexicalIndex.load(paths.root / manifest.bm25.path)
            if len(self.lexical) != len(self.documents):
                raise ValueError(f"BM25 index has {len(self.lexical)} rows but {len(self.documents)} documents")

    def __len__(self) -> int:
        return len(self.documents)

    def search(self, query_embedding: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-n rows and their inner-product scores, best first."""
        n = min(n, len(self.documents))
        scores, rows = self.faiss.search(np.ascontiguousarray(query_embedding.reshape(1, -1), dtype=np.float32), n)
        keep = rows[0] >= 0
        return rows[0][keep], scores[0][keep]

    def lexical_search(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-n rows and BM25 scores, best first (CPU work: call it from a worker thread)."""
        if self.lexical is None:
            raise ValueError("this index has no BM25 index")
        return self.lexical.search(query, n)

    def snippet(self, row: int, chars: int) -> str:
        text = self.documents[row].text
        if len(text) <= chars:
            return text
        cut = text.rfind(" ", 0, chars)
        return text[: cut if cut > chars // 2 else chars] + "…"
